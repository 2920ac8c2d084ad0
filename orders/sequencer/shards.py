"""Which engine owns which market: ENGINE_SHARDS, set by configuration.

    ENGINE_SHARDS="eth=ETH-USDT@tcp://10.0.0.5:5701,tcp://10.0.0.6:5701;rest=*@tcp://10.0.0.7:5701"

Each shard names its markets ("*": every market no other shard names) and the endpoints of
its engine processes: the active one binds its endpoint; standbys wait for leadership
(orders.sequencer.leadership) and bind theirs when they take over. Web workers connect to
every endpoint of a shard; only a bound one receives. The embedded default is one shard of
every market on a local socket under var/."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True, slots=True)
class Shard:
    name: str
    markets: frozenset[str]  # empty: every market no other shard names
    endpoints: tuple[str, ...]

    @property
    def catch_all(self) -> bool:
        return not self.markets


def shards_parse(text: str) -> list[Shard]:
    shards = []
    for part in filter(None, (chunk.strip() for chunk in text.split(";"))):
        name, _, rest = part.partition("=")
        markets, _, endpoints = rest.partition("@")
        symbols = frozenset() if markets.strip() == "*" else frozenset(filter(None, markets.split(",")))
        shards.append(
            Shard(
                name=name.strip(),
                markets=frozenset(s.strip() for s in symbols),
                endpoints=tuple(e.strip() for e in endpoints.split(",") if e.strip()),
            )
        )
    if not shards or not all(shard.name and shard.endpoints for shard in shards):
        raise ValueError(f"ENGINE_SHARDS={text!r}: expected name=MARKET,...|*@endpoint,...;...")
    return shards


def shards() -> list[Shard]:
    return shards_parse(settings.ENGINE_SHARDS)


def shard_named(name: str) -> Shard:
    for shard in shards():
        if shard.name == name:
            return shard
    raise ValueError(f"no engine shard {name!r} in ENGINE_SHARDS")


def shard_for(symbol: str) -> Shard:
    """The shard that owns `symbol`'s market (the catch-all one if none names it)."""
    known = shards()
    for shard in known:
        if symbol in shard.markets:
            return shard
    for shard in known:
        if shard.catch_all:
            return shard
    return known[0]


def symbols_of_other_shards(shard: Shard) -> set[str]:
    return {symbol for other in shards() if other.name != shard.name for symbol in other.markets}
