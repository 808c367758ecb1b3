"""Reading Prometheus text exposition the way a scraper does (prometheus_client's own parser)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample by (name, labels); a family with no samples contributes nothing."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; a labelled counter or histogram that was never touched reads as 0."""
    return samples.get((name, frozenset(labels.items())), 0.0)
