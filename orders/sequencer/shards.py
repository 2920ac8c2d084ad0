"""Which engine owns which market: ENGINE_SHARDS, set by configuration.

    ENGINE_SHARDS="eth=ETH-USDT@tcp://10.0.0.5:5701,tcp://10.0.0.6:5701;rest=*@tcp://10.0.0.7:5701"

Each shard names its markets ("*": every market no other shard names) and the endpoints of
its engine processes: the active one binds its endpoint; standbys wait for leadership
(orders.sequencer.leadership) and bind theirs when they take over. Web workers connect to
every endpoint of a shard; only a bound one receives. The embedded default is one shard of
every market on a local socket under var/."""

from __future__ import annotations

import functools
from collections.abc import Iterable
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
    """The shards `text` names; ValueError when they cannot serve every market once
    (shards_problems). Kept per text: the synchronous order path asks at each order."""
    return list(_shards_checked(text))


@functools.lru_cache(maxsize=8)
def _shards_checked(text: str) -> tuple[Shard, ...]:
    shards = _shards_read(text)
    problems = shards_problems(shards)
    if problems:
        raise ValueError(f"ENGINE_SHARDS={text!r}: " + "; ".join(problems))
    return tuple(shards)


def shards_problems(shards: list[Shard]) -> list[str]:
    """What makes a list of shards unable to give each market exactly one engine. Each was
    accepted, and found out later: a market named by two shards was owned by neither (each
    engine leaves to the other the markets another shard names) and its orders answered "No
    such market"; a second catch-all shard's engine loaded every market the first owns, two
    writers of one book; a shard named twice shares one leadership, so one of its engines
    never served; an endpoint of two shards took the other shard's orders (a second bind of
    an ipc:// path takes it over)."""
    problems = []
    names = [shard.name for shard in shards]
    for name in sorted({name for name in names if names.count(name) > 1}):
        problems.append(f"the shard {name!r} is named more than once")
    catch_all = [shard.name for shard in shards if shard.catch_all]
    if len(catch_all) > 1:
        problems.append(f"more than one shard takes every other market ('*'): {', '.join(catch_all)}")
    owners: dict[str, list[str]] = {}
    for shard in shards:
        for symbol in shard.markets:
            owners.setdefault(symbol, []).append(shard.name)
    for symbol, named in sorted(owners.items()):
        if len(named) > 1:
            problems.append(f"the market {symbol} is named by more than one shard: {', '.join(named)}")
    bound: dict[str, list[str]] = {}
    for shard in shards:
        for endpoint in dict.fromkeys(shard.endpoints):
            bound.setdefault(endpoint, []).append(shard.name)
    for endpoint, named in sorted(bound.items()):
        if len(named) > 1:
            problems.append(f"the endpoint {endpoint} is more than one shard's: {', '.join(named)}")
    return problems


def shards_uncovered(symbols: Iterable[str], configured: list[Shard] | None = None) -> list[str]:
    """Of `symbols`, the markets no shard owns (none is named by a shard, and no shard takes
    every other market): their orders went to the first shard's engine, which does not load
    them, and were answered "No such market"."""
    known = shards() if configured is None else configured
    if any(shard.catch_all for shard in known):
        return []
    named = {symbol for shard in known for symbol in shard.markets}
    return sorted(set(symbols) - named)


def _shards_read(text: str) -> list[Shard]:
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
