"""The soak's mixed load: nodes, gRPC requests and NATS events drawn from a set of documents.

Ids keep the writers apart: the starting corpus is ``d<i>`` and is never deleted (every
``Nearest`` and ``Track`` names an existing node), Upsert clients write ``c<k>`` and the
event stream upserts and deletes ``e<k>`` with increasing versions.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable
from typing import Any

from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

MIX = {"Search": 45, "Nearest": 10, "Recommend": 10, "Get": 10, "Upsert": 5, "Track": 20}
MODES = {
    "dense": pb.SEARCH_MODE_DENSE,
    "hybrid": pb.SEARCH_MODE_HYBRID,
    "keyword": pb.SEARCH_MODE_KEYWORD,
}
CONTENT_TYPES = ("article", "page", "product", "blog_post")
TAGS = tuple(f"topic{i}" for i in range(8))
ACTIONS = {  # user action -> share of user events
    epb.USER_ACTION_VIEW: 50,
    epb.USER_ACTION_CLICK: 20,
    epb.USER_ACTION_LIKE: 8,
    epb.USER_ACTION_IMPRESSION: 15,
    epb.USER_ACTION_CONVERT: 4,
    epb.USER_ACTION_DISMISS: 3,
}
OWN_NODES = 300  # ids each of the Upsert clients and the event stream writes


class Workload:
    """The nodes and requests of the mix, drawn from the starting documents."""

    def __init__(self, docs: list[tuple[str, str]], users: int) -> None:
        self.docs = docs
        self.users = users
        self.own: dict[str, int] = {}  # Upsert clients' nodes -> document shown
        self.event_versions: dict[str, int] = {}
        self.event_live: set[str] = set()

    def node(self, node_id: str, doc: int, rank: int) -> cpb.Node:
        """A node carrying document ``doc``, with a type, two tags and metadata."""
        title, body = self.docs[doc % len(self.docs)]
        node = cpb.Node(
            id=node_id,
            content_type=CONTENT_TYPES[doc % len(CONTENT_TYPES)],
            title=title,
            body=body,
            tags=sorted({TAGS[doc % len(TAGS)], TAGS[(doc * 7 + 3) % len(TAGS)]}),
        )
        node.metadata.update({"rank": rank % 100, "lang": "en" if doc % 3 else "de"})
        return node

    def corpus(self) -> list[cpb.Node]:
        """The starting corpus: ``d0..`` one node per document."""
        return [self.node(f"d{i}", i, i) for i in range(len(self.docs))]

    def _corpus_id(self, rng: random.Random) -> str:
        return f"d{rng.randrange(len(self.docs))}"

    def _user_event(self, rng: random.Random) -> epb.UserEvent:
        return epb.UserEvent(
            event_id=str(uuid.uuid4()),
            user_id=f"u{rng.randrange(self.users)}",
            node_id=self._corpus_id(rng),
            action=rng.choices(list(ACTIONS), list(ACTIONS.values()))[0],
            source="soak",
        )

    def _filter(self, rng: random.Random) -> cpb.Filter:
        kind = rng.randrange(3)
        if kind == 0:
            return cpb.Filter(content_types=rng.sample(CONTENT_TYPES, 2))
        if kind == 1:
            return cpb.Filter(tags_any=[rng.choice(TAGS)])
        low = float(rng.randrange(80))
        condition = cpb.MetadataCondition(
            key="rank", number_range=cpb.NumberRange(gte=low, lt=low + 20)
        )
        return cpb.Filter(metadata=[condition])

    def query(self, rng: random.Random) -> str:
        """A few consecutive words of a random document."""
        title, body = self.docs[rng.randrange(len(self.docs))]
        words = f"{title} {body}".split() or ["soak"]
        size = rng.randint(2, 6)
        start = rng.randrange(max(1, len(words) - size))
        return " ".join(words[start : start + size])

    def request(
        self, stub: search_pb2_grpc.SearchStub, rng: random.Random, timeout: float
    ) -> tuple[str, str, Awaitable[Any]]:
        """(RPC, variant, the call) of one request of the mix."""
        rpc = rng.choices(list(MIX), list(MIX.values()))[0]
        if rpc == "Search":
            mode = rng.choice(list(MODES))
            filtered = rng.random() < 1 / 3
            search = pb.SearchRequest(text=self.query(rng), mode=MODES[mode], top_k=10)
            if filtered:
                search.filter.CopyFrom(self._filter(rng))
            variant = f"{mode}+filter" if filtered else mode
            return rpc, variant, stub.Search(search, timeout=timeout)
        if rpc == "Nearest":
            near = pb.NearestRequest(id=self._corpus_id(rng), top_k=10)
            if rng.random() < 0.3:
                near.content_types.append(rng.choice(CONTENT_TYPES))
            return rpc, "", stub.Nearest(near, timeout=timeout)
        if rpc == "Recommend":
            user = f"u{rng.randrange(self.users * 2)}"  # half of them never tracked: cold
            rec = pb.RecommendRequest(user_id=user, top_k=10, exclude_seen=rng.random() < 0.5)
            if rng.random() < 0.2:
                ids = {self._corpus_id(rng) for _ in range(2)}
                rec.positive.extend(pb.RecommendExample(id=i) for i in ids)
            elif rng.random() < 0.25:
                rec.content_types.append(rng.choice(CONTENT_TYPES))
            return rpc, "", stub.Recommend(rec, timeout=timeout)
        if rpc == "Get":
            wanted = [self._corpus_id(rng) for _ in range(rng.randint(1, 10))]
            wanted.append(f"e{rng.randrange(OWN_NODES)}")  # an event-owned node: maybe missing
            get = pb.GetRequest(ids=wanted, include_vectors=rng.random() < 0.1)
            return rpc, "", stub.Get(get, timeout=timeout)
        if rpc == "Upsert":
            nodes = []
            for key in {f"c{rng.randrange(OWN_NODES)}" for _ in range(rng.randint(1, 3))}:
                if key not in self.own or rng.random() < 0.5:  # new text: re-embedded
                    self.own[key] = rng.randrange(len(self.docs))
                nodes.append(self.node(key, self.own[key], rng.randrange(100)))
            return rpc, "", stub.Upsert(pb.UpsertRequest(nodes=nodes), timeout=timeout)
        events = [self._user_event(rng) for _ in range(rng.randint(1, 5))]
        return rpc, "", stub.Track(pb.TrackRequest(events=events), timeout=timeout)

    def event(self, rng: random.Random) -> tuple[str, str, bytes, str]:
        """(kind, subject, payload, event id) of the next event of the stream: a content
        upsert (half), a delete of a live event-owned node (a tenth), else a user event."""
        draw = rng.random()
        if draw < 0.6:
            key = f"e{rng.randrange(OWN_NODES)}"
            delete = draw >= 0.5 and key in self.event_live
            version = self.event_versions[key] = self.event_versions.get(key, 0) + 1
            event_id = str(uuid.uuid4())
            node = self.node(key, rng.randrange(len(self.docs)), version)
            if delete:
                self.event_live.discard(key)
                op, kind, node = epb.CONTENT_OP_DELETE, "content_delete", cpb.Node(id=key)
            else:
                self.event_live.add(key)
                op, kind = epb.CONTENT_OP_UPSERT, "content_upsert"
            content = epb.ContentEvent(
                event_id=event_id, op=op, version=version, node=node, source="soak"
            )
            subject = f"semantic.content._.{node.content_type or '_'}"
            return kind, subject, content.SerializeToString(), event_id
        user = self._user_event(rng)
        return "user", "semantic.user._", user.SerializeToString(), user.event_id
