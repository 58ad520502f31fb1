"""One model run by K workers together, each holding one shard (sharded.py): the first worker (the
leader) runs generation.Session on a ShardGroup, which has Mamba's interface (new_state, step,
prefill, state copies); the others (followers) each run a ShardFollower, which does what the
leader's commands say. Every shard's step is driven here, its partial sums summed over a `link`.

A link is the transport between the K workers (the browser's is web/reduce-transport.js, through
JsLink; tests use threads). It offers:
    command(op, args)   leader: send a command (an op and a list of ints) to every follower; returns
                        once each has read the one before, so commands never overtake each other
    all_sum(partial)    every worker: the sum of `partial` over all K workers, added in shard order
                        (sharded.sum_partials), the same array on each
    gather(part)        every worker: the leader gets [K arrays] (its own first), followers None
Followers receive commands in order and call ShardFollower.execute(op, args).

A state is the K shards' states: the leader's ShardGroupState holds its own and an id; each
follower keeps its shard's state under the same id (new, copy and free are commands too).
"""

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .generation import PREFILL_BLOCK
from .kernels import Scratch
from .plan import describe

NEW_STATE, COPY_STATE, FREE_STATES, STEP, PREFILL, RELEASE = range(1, 7)
MAX_ARGS = PREFILL_BLOCK + 2  # PREFILL: the state id, then up to PREFILL_BLOCK token ids


def slot_floats(config, n_shards):
    """The most floats one worker sends in one exchange: a prompt block's partial sums, or its logits slice."""
    widths = [config.d_model]
    if config.architecture == "Mamba-1":
        widths.append(config.dt_rank + 2 * config.d_state)  # x_proj's sums
    else:
        widths.append(config.n_groups)  # the gated norm's sums of squares of a cut group
    return max(PREFILL_BLOCK * max(widths), -(-config.vocab_size // n_shards))


class ShardGroupState:
    """The K shards' states: `local` is the leader's shard's, `id` names the followers' ones."""

    def __init__(self, group, state_id, local):
        self.group = group
        self.id = state_id
        self.local = local

    def copy(self):
        return self.group.copy_state(self)

    def __del__(self):
        self.group.freed.append(self.id)  # told to the followers with the next command


class ShardGroup:
    """The leader's model: Mamba's interface (new_state, step, prefill, config, state_nbytes) over
    K workers, this one running `shard` (index 0)."""

    def __init__(self, shard, link):
        if shard.shard.index != 0:
            raise InputError(f"the leader runs shard 1, not shard {shard.shard.index + 1}")
        self.shard = shard
        self.link = link
        self.config = shard.config
        self.count = shard.shard.count
        self.freed = []  # ids of states dropped since the last command
        self._next_id = 0

    @property
    def state_nbytes(self):
        return describe(self.config)["state_nbytes"]

    def new_state(self):
        state_id = self._command(NEW_STATE)
        return ShardGroupState(self, state_id, self.shard.new_state())

    def copy_state(self, state):
        state_id = self._command(COPY_STATE, state.id)
        return ShardGroupState(self, state_id, state.local.copy())

    def step(self, token, state):
        """Logits (v,) after `token`: every shard steps, the slices are gathered here."""
        steps = self.shard.step(token, state.local)  # checked here, before any follower starts
        self._send(STEP, [state.id, int(token)])
        return self._gathered(drive(steps, self.link))

    def prefill(self, ids, state):
        """Logits (v,) after a prompt block of at most PREFILL_BLOCK ids."""
        if len(ids) > PREFILL_BLOCK:
            raise InputError(f"a prompt block of a model split across workers holds at most {PREFILL_BLOCK} tokens")
        steps = self.shard.prefill(ids, state.local)
        self._send(PREFILL, [state.id, *(int(i) for i in ids)])
        return self._gathered(drive(steps, self.link))

    def release(self):
        """The followers drop their shards and stop following."""
        self._send(RELEASE, [])

    def _gathered(self, logits):
        return np.concatenate(self.link.gather(logits))

    def _command(self, op, *args):
        """A state command; returns the id of the state it makes."""
        state_id = self._next_id
        self._next_id += 1
        self._send(op, [state_id, *args])
        return state_id

    def _send(self, op, args):
        if self.freed:
            freed, self.freed = self.freed, []
            self.link.command(FREE_STATES, freed)
        self.link.command(op, args)


def drive(steps, link):
    """Run one shard's generator to its end, each partial sum summed over the link; its result."""
    total = None
    while True:
        try:
            partial = steps.send(total)
        except StopIteration as finished:
            return finished.value
        total = link.all_sum(partial)


@dataclass
class ShardFollower:
    """A follower: its shard, and its shard's part of each of the leader's states, by id."""

    shard: object  # sharded.MambaShard, index >= 1
    link: object
    states: dict = field(default_factory=dict)  # state id -> MambaState

    def execute(self, op, args):
        """Do one command; False once the group is released."""
        if op == NEW_STATE:
            self.states[args[0]] = self.shard.new_state()
        elif op == COPY_STATE:
            self.states[args[0]] = self.states[args[1]].copy()
        elif op == FREE_STATES:
            for state_id in args:
                self.states.pop(state_id, None)
        elif op in (STEP, PREFILL):
            state = self.states[args[0]]
            steps = self.shard.step(args[1], state) if op == STEP else self.shard.prefill(np.array(args[1:]), state)
            self.link.gather(drive(steps, self.link))
        elif op == RELEASE:
            self.states.clear()
            return False
        else:
            raise InputError(f"unknown shard command {op}")
        return True


class JsLink:
    """A link whose transport is JavaScript's, working on Python's own memory: each partial sum is
    copied into a scratch buffer whose address the transport is given; it reads the partial sum
    there and writes the total over it. web/reduce-transport.js (shared memory) answers at once;
    web/port-transport.js (MessageChannels) answers with promises, which run_sync blocks on (JSPI:
    the Python call must have been entered through callPromising).

    Why addresses: handing the arrays over as objects (to_js of a memoryview, a new Float32Array
    back, to_bytes, frombuffer) cost each worker 4.7 ms of a mamba-130m token (49 exchanges) in the
    page; the copies in and out of the scratch buffer cost 0.8 ms."""

    def __init__(self, transport):
        from pyodide.ffi import run_sync, to_js  # only in a browser worker

        self._to_js = to_js
        self._answer = run_sync if getattr(transport, "suspends", False) else (lambda answer: answer)
        self.transport = transport
        self._floats = Scratch()

    def command(self, op, args):
        self.transport.command(op, self._to_js(args))

    def all_sum(self, partial):
        floats = self._put(partial)
        self._answer(self.transport.allSum(self._floats.address, partial.size))
        return floats.reshape(partial.shape).copy()  # the scratch is the next exchange's

    def gather(self, part):
        self._put(part)
        parts = self.transport.gather(self._floats.address, part.size)
        if parts is None:
            return None
        return [np.frombuffer(p.to_bytes(), np.float32) for p in self._answer(parts)]

    def _put(self, array):
        """`array` as float32 in the scratch buffer (a view of it, valid until the next exchange)."""
        floats = self._floats.take(array.size)
        np.copyto(floats.reshape(array.shape), array)
        return floats
