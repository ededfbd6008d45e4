"""Settings of recommendations and tracking (mixed into the search and indexer settings)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from semantic.common.settings import BaseServiceSettings
from semantic.core.recommend.events import Action, TrackConfig
from semantic.core.recommend.values import RecommendConfig


class RecommendSettings(BaseSettings):
    """Mixed into SearchSettings; every field reads SEMANTIC_<FIELD NAME>."""

    model_config = SettingsConfigDict(**BaseServiceSettings.model_config)

    recommend_weight_view: float = Field(1.0, description="Journey weight of a VIEW.")
    recommend_weight_click: float = Field(2.0, description="Journey weight of a CLICK.")
    recommend_weight_like: float = Field(3.0, description="Journey weight of a LIKE.")
    recommend_weight_convert: float = Field(5.0, description="Journey weight of a CONVERT.")
    recommend_weight_dismiss: float = Field(-2.0, description="Journey weight of a DISMISS.")
    recommend_journey_half_life_hours: float = Field(
        72.0, gt=0, description="An event's pull on the journey halves every this many hours."
    )
    recommend_max_future_s: float = Field(
        300.0, ge=0, description="How far in the future an event's occurred_at may be."
    )
    recommend_max_track_events: int = Field(1000, ge=1, description="Events per Track call.")
    recommend_similarity_weight: float = Field(1.0, description="Score weight of similarity.")
    recommend_engagement_weight: float = Field(0.3, description="Score weight of engagement.")
    recommend_recency_weight: float = Field(0.1, description="Score weight of recency.")
    recommend_archetype_weight: float = Field(0.2, description="Score weight of the archetype.")
    recommend_relations_weight: float = Field(
        0.3,
        description="Score weight of the strongest prerequisite/follows relation from one of "
        "the user's recent nodes (0: relations neither raise nor add candidates).",
    )
    recommend_prior_strength: float = Field(
        20.0, ge=0, description="Pseudo-impressions of the engagement prior (smoothing)."
    )
    recommend_default_rate: float = Field(
        0.05, ge=0, le=1, description="Prior engagement rate until 100 impressions are logged."
    )
    recommend_recency_half_life_days: float = Field(
        30.0, gt=0, description="Recency halves every this many days since the node's update."
    )
    recommend_candidates: int = Field(100, ge=1, description="Nearest candidates per query.")
    recommend_popular_candidates: int = Field(50, ge=0, description="Popular candidates.")
    recommend_max_top_k: int = Field(100, ge=1, description="Largest top_k a request may ask.")
    recommend_max_examples: int = Field(64, ge=1, description="Positive + negative examples.")
    recommend_archetypes: int = Field(
        8, ge=0, le=256, description="Derived archetypes per tenant (k of k-means; 0: none)."
    )
    recommend_archetype_min_events: int = Field(
        3, ge=1, description="Events a user needs before being clustered into an archetype."
    )
    recommend_max_share_per_content_type: float = Field(
        1.0, gt=0, le=1, description="Default cap on one content type's share of the hits."
    )

    def track_config(self) -> TrackConfig:
        """The tracker's weights and clocks."""
        return TrackConfig(
            weights={
                Action.IMPRESSION: 0.0,
                Action.VIEW: self.recommend_weight_view,
                Action.CLICK: self.recommend_weight_click,
                Action.LIKE: self.recommend_weight_like,
                Action.CONVERT: self.recommend_weight_convert,
                Action.DISMISS: self.recommend_weight_dismiss,
            },
            half_life_hours=self.recommend_journey_half_life_hours,
            max_future_s=self.recommend_max_future_s,
        )

    def recommend_config(self) -> RecommendConfig:
        """The recommender's defaults (its dense search uses the search settings'
        ``search_ef_search`` and ``search_exact_threshold``)."""
        return RecommendConfig(
            similarity_weight=self.recommend_similarity_weight,
            engagement_weight=self.recommend_engagement_weight,
            recency_weight=self.recommend_recency_weight,
            archetype_weight=self.recommend_archetype_weight,
            prior_strength=self.recommend_prior_strength,
            default_rate=self.recommend_default_rate,
            recency_half_life_days=self.recommend_recency_half_life_days,
            candidates=self.recommend_candidates,
            popular_candidates=self.recommend_popular_candidates,
            max_top_k=self.recommend_max_top_k,
            max_examples=self.recommend_max_examples,
            max_share_per_content_type=self.recommend_max_share_per_content_type,
            relations_weight=self.recommend_relations_weight,
        )
