# pragma version 0.4.3
# pragma evm-version prague
"""
@title HolderReserve
@notice Receives the holder share of platform revenue events as ETH, in batches,
        exactly once per event.
@dev Exactly-once is enforced by a monotonic delivery sequence instead of
     per-event storage: every delivered event gets the next sequence number and a
     batch must start exactly at `next_sequence`. A batch that was already mined
     (e.g. a re-broadcast after a timeout) is refused with "already delivered";
     a batch that skips ahead is refused with "sequence gap".
     Gas: per-stream sums are accumulated in memory and each touched storage slot
     is written once per batch, so the marginal cost of an event is its calldata
     and its log.
"""

NUM_STREAMS: constant(uint256) = 10
MAX_BATCH: constant(uint256) = 256

event Delivered:
    sequence: indexed(uint256)
    event_id: indexed(uint256)
    stream_id: uint8
    amount: uint256

signer: public(address)
next_sequence: public(uint256)
stream_totals: public(uint256[NUM_STREAMS])
total_received: public(uint256)


@deploy
def __init__():
    self.signer = msg.sender


@external
@payable
def deliver(
    first_sequence: uint256,
    event_ids: DynArray[uint256, MAX_BATCH],
    stream_ids: DynArray[uint8, MAX_BATCH],
    amounts: DynArray[uint256, MAX_BATCH],
):
    assert msg.sender == self.signer, "not signer"
    expected: uint256 = self.next_sequence
    assert first_sequence >= expected, "already delivered"
    assert first_sequence == expected, "sequence gap"
    count: uint256 = len(event_ids)
    assert count > 0, "empty batch"
    assert len(stream_ids) == count, "length mismatch"
    assert len(amounts) == count, "length mismatch"

    sums: uint256[NUM_STREAMS] = empty(uint256[NUM_STREAMS])
    total: uint256 = 0
    for i: uint256 in range(count, bound=MAX_BATCH):
        stream: uint256 = convert(stream_ids[i], uint256)
        assert stream < NUM_STREAMS, "bad stream"
        amount: uint256 = amounts[i]
        sums[stream] += amount
        total += amount
        log Delivered(
            sequence=first_sequence + i,
            event_id=event_ids[i],
            stream_id=stream_ids[i],
            amount=amount,
        )
    assert total == msg.value, "value mismatch"

    for s: uint256 in range(NUM_STREAMS):
        if sums[s] != 0:  # untouched streams cost no storage access
            self.stream_totals[s] += sums[s]
    self.total_received += total
    self.next_sequence = first_sequence + count


@external
@payable
def __default__():
    raise "plain sends refused"
