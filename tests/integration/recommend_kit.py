"""The small topical catalogue the recommendation tests share: three topics of four nodes,
node ``<topic><i>`` of content type ``TYPES[i]``."""

from __future__ import annotations

from semantic.v1 import common_pb2 as cpb

TOPICS = {
    "bread": [
        "Sourdough starter care and feeding schedule",
        "Shaping a rustic country loaf with a crisp crust",
        "Rye bread fermentation and baking temperatures",
        "Why bread dough needs kneading and gluten",
    ],
    "tls": [
        "Renewing TLS certificates automatically with ACME",
        "Certificate chains and intermediate authorities",
        "Rotating private keys for HTTPS servers",
        "OCSP stapling and certificate revocation",
    ],
    "garden": [
        "Growing tomatoes on a sunny balcony",
        "Composting kitchen scraps for garden soil",
        "Pruning roses in late winter",
        "Watering vegetables during a heat wave",
    ],
}
TYPES = ("page", "product", "quiz", "page")


def topic_nodes(*, with_body: bool = True) -> list[cpb.Node]:
    """Every node of the catalogue (its title as body too, unless ``with_body`` is False)."""
    return [
        cpb.Node(
            id=f"{topic}{i}",
            slug=f"{topic}-{i}",
            content_type=TYPES[i],
            title=title,
            body=title if with_body else "",
        )
        for topic, titles in TOPICS.items()
        for i, title in enumerate(titles)
    ]
