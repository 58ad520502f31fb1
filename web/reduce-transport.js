// The transport between the K workers that run one model (worker side): a SharedArrayBuffer and
// Atomics, so a worker waits for its peers' partial sums inside one synchronous Python call
// (mamba_wasm/shard_group.py's link: command, all_sum, gather). It needs a cross-origin isolated
// page (COOP/COEP headers: `python3 build.py serve --isolated`). The page's first worker (the
// leader) makes the buffer and sends it to the others with their shards (shard-leader.js).
//
// Partial sums are read where Python's NumPy put them, in Pyodide's WebAssembly memory (given its
// address: shard_group.JsLink), and the total is written over them there.
//
// Layout: Int32 control words, then two sets (by exchange parity) of K slots of slotFloats floats.
// A worker is at most one exchange ahead of the slowest (each all_sum waits for every peer), so
// two sets never overwrite a slot still being read. Every wait wakes up on an abort (a worker that
// failed sets ABORT and wakes all), and at least once a second to look.

const COMMAND = 0;  // the leader's command count
const ABORT = 1;    // 0, or 1 + the index of the worker that failed
const OP = 2;       // the latest command: its op, its number of args, then the args
const NARGS = 3;
const HEADER = 4;
export const MAX_ARGS = 1024;  // >= shard_group.MAX_ARGS (a prompt block's ids and a state id)
const WAKE_MS = 1000;
// Spin before sleeping: the peer is usually about to publish (both do the same work), and a futex
// sleep costs both sides (the sleeper wakes late; the publisher's Atomics.notify enters the kernel).
// On the demo model, 2 workers on a busy 2-core machine decoded at 3.1 tok/s without spinning,
// 27.3 with 5,000 loads (~40 us) first. On mamba-130m-shaped, after those 40 us 2 workers still
// slept in 15-25 of a token's 49 exchanges (most waits last 0.1-2 ms: the peer had been preempted
// by the page's own threads) and publishing took 3-5 ms of each token; spinning up to 3 ms, they
// sleep about once a token and publishing takes 0.4-0.6 ms.
const SPIN_MS = 3;

function layout(count) {
  const ack = HEADER;              // per worker: the last command it read
  const ready = ack + count;       // per worker: 1 once its shard loaded
  const flag = ready + count;      // per worker: the last exchange it wrote
  const length = flag + count;     // per parity and worker: floats in the slot
  const args = length + 2 * count;
  return { ack, ready, flag, length, args, ints: args + MAX_ARGS };
}

// Bytes of the buffer for `count` workers exchanging at most slotFloats floats at a time.
export function sharedBufferBytes(count, slotFloats) {
  return 4 * layout(count).ints + 4 * slotFloats * 2 * count;
}

export class ShardFailed extends Error {}

// Float32Arrays on Python's memory (Pyodide's WebAssembly.Memory), at NumPy's addresses.
export class PythonFloats {
  constructor(memory) {
    if (!(memory instanceof WebAssembly.Memory)) throw new Error("Pyodide's WebAssembly.Memory was not seen");
    this.memory = memory;
    this.view = new Float32Array(memory.buffer);
  }

  // `length` floats at byte `address` (NumPy's float32 data is 4-byte aligned).
  at(address, length) {
    if (this.view.buffer !== this.memory.buffer) this.view = new Float32Array(this.memory.buffer);  // it grew
    return this.view.subarray(address / 4, address / 4 + length);
  }
}

export class ReduceTransport {
  constructor(sab, count, index, slotFloats) {
    this.count = count;
    this.index = index;
    this.python = null;  // usePythonMemory
    this.at = layout(count);
    this.ints = new Int32Array(sab, 0, this.at.ints);
    const floatsStart = 4 * this.at.ints;
    this.slots = [0, 1].map((parity) => Array.from({ length: count }, (_, k) => new Float32Array(
      sab, floatsStart + 4 * slotFloats * (parity * count + k), slotFloats)));
    this.seq = 0;           // exchanges so far: the same on every worker
    this.commandsSeen = 0;  // followers: commands read so far
  }

  // Where the partial sums are read and the totals written: this worker's Pyodide's
  // WebAssembly.Memory (runtime.js), once Python has started (before the first exchange).
  usePythonMemory(memory) {
    this.python = new PythonFloats(memory);
  }

  // ---- failure -----------------------------------------------------------------------------------

  // This worker failed: every waiting peer wakes and throws ShardFailed.
  abort() {
    Atomics.compareExchange(this.ints, ABORT, 0, this.index + 1);
    for (let i = 0; i < this.at.ints; i++) Atomics.notify(this.ints, i);
  }

  checkAbort() {
    const failed = Atomics.load(this.ints, ABORT);
    if (failed !== 0) {
      throw new ShardFailed(`Worker ${failed} of the ${this.count} that run this model failed, so the model stopped.`);
    }
  }

  // Block until ints[i] >= target (a peer on another core is usually well within SPIN_MS).
  waitAtLeast(i, target) {
    const until = performance.now() + SPIN_MS;
    do {
      for (let spin = 0; spin < 64; spin++) if (Atomics.load(this.ints, i) >= target) return;
    } while (performance.now() < until);
    let seen;
    while ((seen = Atomics.load(this.ints, i)) < target) {
      this.checkAbort();
      Atomics.wait(this.ints, i, seen, WAKE_MS);
    }
  }

  // The same without blocking the thread's event loop (loading, and a follower between commands).
  async waitAtLeastAsync(i, target) {
    let seen;
    while ((seen = Atomics.load(this.ints, i)) < target) {
      this.checkAbort();
      const result = Atomics.waitAsync(this.ints, i, seen, WAKE_MS);
      if (result.async) await result.value;
    }
  }

  // ---- loading -----------------------------------------------------------------------------------

  setReady() {
    Atomics.store(this.ints, this.at.ready + this.index, 1);
    Atomics.notify(this.ints, this.at.ready + this.index);
  }

  // Leader: until every follower has loaded its shard.
  async waitReady() {
    for (let k = 1; k < this.count; k++) await this.waitAtLeastAsync(this.at.ready + k, 1);
  }

  // ---- commands (leader -> followers) ------------------------------------------------------------

  command(op, args) {
    if (args.length > MAX_ARGS) throw new Error(`a shard command holds at most ${MAX_ARGS} values`);
    const sent = Atomics.load(this.ints, COMMAND);
    for (let k = 1; k < this.count; k++) this.waitAtLeast(this.at.ack + k, sent);  // each read the last one
    this.ints[OP] = op;
    this.ints[NARGS] = args.length;
    this.ints.set(args, this.at.args);
    Atomics.store(this.ints, COMMAND, sent + 1);
    Atomics.notify(this.ints, COMMAND);
  }

  // Follower: the next command, {op, args}.
  async nextCommand() {
    await this.waitAtLeastAsync(COMMAND, this.commandsSeen + 1);
    this.commandsSeen += 1;
    const op = this.ints[OP];
    const args = Array.from(this.ints.subarray(this.at.args, this.at.args + this.ints[NARGS]));
    Atomics.store(this.ints, this.at.ack + this.index, this.commandsSeen);
    Atomics.notify(this.ints, this.at.ack + this.index);
    return { op, args };
  }

  // ---- exchanges ---------------------------------------------------------------------------------

  publish(mine) {
    const seq = ++this.seq;
    const parity = seq & 1;
    this.slots[parity][this.index].set(mine);
    Atomics.store(this.ints, this.at.length + parity * this.count + this.index, mine.length);
    Atomics.store(this.ints, this.at.flag + this.index, seq);
    Atomics.notify(this.ints, this.at.flag + this.index);
    return { seq, parity };
  }

  // The sum over all workers of the `length` floats at `address` in Python's memory, written over
  // them, added in shard order, left to right, each addition rounded to float32: NumPy's float32
  // sum in sharded.sum_partials, so every worker's replica of the residual stream stays bit-identical.
  allSum(address, length) {
    const mine = this.python.at(address, length);
    const { seq, parity } = this.publish(mine);
    for (let k = 0; k < this.count; k++) if (k !== this.index) this.waitAtLeast(this.at.flag + k, seq);
    const slots = this.slots[parity];
    mine.set(slots[0].subarray(0, length));
    for (let k = 1; k < this.count; k++) {
      const part = slots[k];
      for (let i = 0; i < length; i++) mine[i] += part[i];
    }
  }

  // The leader gets every worker's `length` floats at `address` (lengths may differ) as
  // Float32Arrays, in shard order; a follower null.
  gather(address, length) {
    const { seq, parity } = this.publish(this.python.at(address, length));
    if (this.index !== 0) return null;
    const parts = [];
    for (let k = 0; k < this.count; k++) {
      if (k !== this.index) this.waitAtLeast(this.at.flag + k, seq);
      const n = Atomics.load(this.ints, this.at.length + parity * this.count + k);
      parts.push(this.slots[parity][k].slice(0, n));
    }
    return parts;
  }
}
