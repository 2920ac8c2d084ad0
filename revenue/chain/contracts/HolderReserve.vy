# pragma version 0.4.3
# pragma evm-version prague
"""
@title HolderReserve
@notice Receives the holder share of platform revenue as ETH, in batches, at most
        once per item id (a revenue event, or a bundle of carried-forward dust).
@dev Exactly-once is enforced per item id, whatever transaction, nonce or sender
     carries it: a bitmap of paid ids, one storage word per 256 consecutive ids.
     An id already paid is not paid again: it is logged as `Refused` and its amount
     is sent back to the caller in the same transaction, so the rest of the batch
     still goes through. Every id paid is logged once as `Delivered`: the logs alone
     prove which transaction paid which id.
     Gas: per-stream sums are kept in memory, the bitmap word is loaded and written
     once per run of ids sharing it (a batch of consecutive ids touches one or two
     words), and each touched storage slot is written once per batch, so the
     marginal cost of an item is its calldata and its log.
"""

NUM_STREAMS: constant(uint256) = 10
MAX_BATCH: constant(uint256) = 256
NO_WORD: constant(uint256) = max_value(uint256)  # item_id >> 8 never reaches it

event Delivered:
    item_id: indexed(uint256)
    stream_id: uint8
    amount: uint256

event Refused:
    item_id: indexed(uint256)
    amount: uint256

event SignerSet:
    signer: indexed(address)
    allowed: bool

event PausedSet:
    paused: bool

event OwnerSet:
    owner: indexed(address)

owner: public(address)
signers: public(HashMap[address, bool])
paused: public(bool)
items_paid: public(uint256)
stream_totals: public(uint256[NUM_STREAMS])
total_received: public(uint256)
paid_words: HashMap[uint256, uint256]  # bit (id & 255) of word (id >> 8): id paid


@deploy
def __init__():
    self.owner = msg.sender
    self.signers[msg.sender] = True
    log OwnerSet(owner=msg.sender)
    log SignerSet(signer=msg.sender, allowed=True)


@view
@external
def is_paid(item_id: uint256) -> bool:
    return (self.paid_words[item_id >> 8] >> (item_id & 255)) & 1 == 1


@external
def set_signer(signer: address, allowed: bool):
    assert msg.sender == self.owner, "not owner"
    self.signers[signer] = allowed
    log SignerSet(signer=signer, allowed=allowed)


@external
def set_paused(paused: bool):
    assert msg.sender == self.owner, "not owner"
    self.paused = paused
    log PausedSet(paused=paused)


@external
def set_owner(owner: address):
    assert msg.sender == self.owner, "not owner"
    assert owner != empty(address), "no owner"
    self.owner = owner
    log OwnerSet(owner=owner)


@external
@payable
def deliver(
    item_ids: DynArray[uint256, MAX_BATCH],
    stream_ids: DynArray[uint8, MAX_BATCH],
    amounts: DynArray[uint256, MAX_BATCH],
):
    assert not self.paused, "paused"
    assert self.signers[msg.sender], "not signer"
    count: uint256 = len(item_ids)
    assert count > 0, "empty batch"
    assert len(stream_ids) == count, "length mismatch"
    assert len(amounts) == count, "length mismatch"

    sums: uint256[NUM_STREAMS] = empty(uint256[NUM_STREAMS])
    total: uint256 = 0
    refused: uint256 = 0
    paid: uint256 = 0
    word_index: uint256 = NO_WORD
    word: uint256 = 0
    for i: uint256 in range(count, bound=MAX_BATCH):
        item_id: uint256 = item_ids[i]
        stream: uint256 = convert(stream_ids[i], uint256)
        assert stream < NUM_STREAMS, "bad stream"
        amount: uint256 = amounts[i]
        index: uint256 = item_id >> 8
        if index != word_index:
            if word_index != NO_WORD:
                self.paid_words[word_index] = word
            word_index = index
            word = self.paid_words[index]
        bit: uint256 = 1 << (item_id & 255)
        if word & bit != 0:
            refused += amount
            log Refused(item_id=item_id, amount=amount)
            continue
        word = word | bit
        sums[stream] += amount
        total += amount
        paid += 1
        log Delivered(item_id=item_id, stream_id=stream_ids[i], amount=amount)
    self.paid_words[word_index] = word
    assert total + refused == msg.value, "value mismatch"

    for s: uint256 in range(NUM_STREAMS):
        if sums[s] != 0:  # untouched streams cost no storage access
            self.stream_totals[s] += sums[s]
    if paid != 0:
        self.total_received += total
        self.items_paid += paid
    if refused != 0:
        raw_call(msg.sender, b"", value=refused)


@external
@payable
def __default__():
    raise "plain sends refused"
