"""Running one region through CUDA graphs: warm-up, capture, replay, and the checks that keep
replays exactly equivalent to running the region.

Inputs. A graph reads fixed addresses. An input whose address was the same in the warm-up and the
capturing call (parameters, buffers, a KV cache, residuals coming from another graph) is used in
place: the graph reads it where it lives, so an optimizer updating parameters in place is seen by
the next replay at no cost. Every other input gets a private static buffer that each call copies
into, unless the caller passes that buffer itself. A replay requires the in-place inputs at their
captured addresses; when one moved, a new graph is captured with that input copied instead.
Inputs the region writes into (in-place ops) that live in private buffers are copied back.

Outputs. A graph writes its outputs into the same memory at every replay. Small outputs the
program returns (logits of one token, a loss) are copied out, so callers may keep them. Others
(activations saved for backward, gradients) are handed out as aliases, and before a replay the
runner checks with the storages' use counts that nobody holds an alias of the previous replay's
outputs any more; if someone does, another graph (a *slot*, up to ``max_slots``) is used or
captured, and once those are exhausted the region just runs without a graph for that call.
A wrong result is never the price of a replay.

RNG. ``torch.cuda.graph`` registers the default CUDA generator, whose seed and offset are read
on the device at each replay, so dropout draws fresh numbers per replay; explicit generators
found in the region are registered too.
"""

from __future__ import annotations

import collections
import warnings
import weakref

import torch

_use_count = torch._C._storage_Use_Count


def _host_state():
    """Host-side switches a region's bookkeeping may change."""
    return (torch.is_grad_enabled(), torch.is_autocast_enabled("cuda"), torch.is_autocast_enabled("cpu"),
            torch.get_autocast_dtype("cuda"), torch.is_autocast_cache_enabled())


class GraphCache:
    """Bounds the number of captured graphs of a plugin instance: least recently used are dropped."""

    def __init__(self, limit: int):
        self.limit = limit
        self.slots: collections.OrderedDict = collections.OrderedDict()  # id(slot) -> (runner ref, slot)
        self.output_ptrs: set[int] = set()  # addresses of live graphs' static outputs

    def add(self, runner, slot) -> None:
        self.slots[id(slot)] = (weakref.ref(runner), slot)
        self.output_ptrs.update(slot.output_ptrs)
        while len(self.slots) > self.limit:
            _, (ref, old) = self.slots.popitem(last=False)
            owner = ref()
            if owner is not None:
                owner.drop(old)

    def touch(self, slot) -> None:
        self.slots.move_to_end(id(slot))

    def forget(self, slot) -> None:
        if self.slots.pop(id(slot), None) is not None:
            self.output_ptrs.difference_update(slot.output_ptrs)


class _Slot:
    """One captured graph with its static inputs and outputs."""

    __slots__ = ("graph", "adopted", "private", "copy_back", "outputs", "alive_checks", "plan", "host_fn",
                 "output_ptrs")

    def replay(self, args):
        for i, buf, writer, ptr in self.private:
            a = args[i]
            if a is not buf and a.data_ptr() != ptr:
                writer.copy_(a)
        self.graph.replay()
        for i, buf in self.copy_back:
            if args[i].data_ptr() != buf.data_ptr():
                args[i].copy_(buf)
        if self.host_fn is not None:
            self.host_fn()
        return tuple(o.clone() if how == 1 else (o.detach() if how == 2 else o)
                     for o, how in zip(self.outputs, self.plan))


class GraphRunner:
    """A region's callable with CUDA graphs (same signature and results as the region)."""

    def __init__(self, fn, info, *, cache: GraphCache, warmup: int = 2, max_slots: int = 2,
                 max_captures: int = 8):
        self.fn = fn
        self.info = info
        self.cache = cache
        self.warmup = warmup
        self.max_slots = max_slots
        self.max_captures = max_captures
        self.slots: list[_Slot] = []
        self.calls = 0
        self.captures = 0
        self.replays = 0
        self.eager_calls = 0
        self.prev_ptrs: list | None = None
        self.copied: set[int] = set()  # input positions that get private buffers
        self.disabled: str | None = None
        self._warned_busy = False

    # -- the fast path ------------------------------------------------------------------------
    def __call__(self, *args):
        for slot in self.slots:
            for i, ptr in slot.adopted:
                if args[i].data_ptr() != ptr:
                    break
            else:
                for cdata, base in slot.alive_checks:
                    if _use_count(cdata) != base:
                        break
                else:
                    self.replays += 1
                    self.cache.touch(slot)
                    return slot.replay(args)
        return self._slow(args)

    # -- everything else ----------------------------------------------------------------------
    def _eager(self, args):
        self.eager_calls += 1
        return self.fn(*args)

    def _slow(self, args):
        self.calls += 1
        if self.disabled is not None:
            return self._eager(args)
        ptrs = [a.data_ptr() if isinstance(a, torch.Tensor) else None for a in args]
        prev, self.prev_ptrs = self.prev_ptrs, ptrs
        if prev is None or self.calls <= self.warmup:
            return self._eager(args)
        # Inputs that moved since the last call are copied from now on, except those living in
        # another graph's static outputs (the forward's residuals read by the backward graph):
        # their addresses stay put as long as that graph does.
        graph_memory = self.cache.output_ptrs
        self.copied |= {i for i, (p, q) in enumerate(zip(ptrs, prev)) if p != q and p not in graph_memory}
        stale = []
        for slot in self.slots:
            moved = {i for i, ptr in slot.adopted if ptrs[i] != ptr}
            if moved:
                stale.append(slot)
                self.copied |= {i for i in moved if ptrs[i] not in graph_memory}
        if len(self.slots) >= self.max_slots:
            if stale:
                self.drop(stale[0])  # its baked addresses do not match this call
            else:
                if not self._warned_busy:
                    self._warned_busy = True
                    warnings.warn(f"thunder-cudagraphs: {self.info.name}: outputs of {len(self.slots)} earlier "
                                  f"calls are still referenced, so this call runs without a CUDA graph (keep "
                                  f"fewer results alive, or raise the option cudagraphs_max_slots)", stacklevel=2)
                return self._eager(args)
        if self.captures >= self.max_captures:
            self.disabled = (f"inputs keep changing address ({self.captures} captures); running without "
                             f"CUDA graphs")
            warnings.warn(f"thunder-cudagraphs: {self.info.name}: {self.disabled}", stacklevel=2)
            return self._eager(args)
        try:
            slot = self._capture(args)
        except Exception as e:  # noqa: BLE001 -- any failure to capture means: run normally
            self.disabled = f"capture failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            warnings.warn(f"thunder-cudagraphs: {self.info.name}: {self.disabled}; running without "
                          f"CUDA graphs", stacklevel=2)
            try:
                torch.cuda.synchronize()
            except Exception:  # noqa: BLE001
                pass
            return self._eager(args)
        self.slots.append(slot)
        self.cache.add(self, slot)
        self.replays += 1
        return slot.replay(args)

    def drop(self, slot) -> None:
        """Forgets a slot (its graph memory is freed once its outputs are no longer referenced)."""
        if slot in self.slots:
            self.slots.remove(slot)
        self.cache.forget(slot)

    def _capture(self, args) -> _Slot:
        self.captures += 1
        static, adopted, private, copy_back = [], [], [], []
        mutated = self.info.mutated
        with torch.no_grad():
            for i, a in enumerate(args):
                if not isinstance(a, torch.Tensor):
                    static.append(a)
                elif i in self.copied and not isinstance(a, torch.nn.Parameter):
                    buf = a.detach().clone()  # same strides (compiled regions guard on them)
                    if a.requires_grad:
                        buf.requires_grad_(True)
                    static.append(buf)
                    private.append((i, buf, buf.detach(), buf.data_ptr()))
                    if i < len(mutated) and mutated[i]:
                        copy_back.append((i, buf))
                else:
                    static.append(a)
                    adopted.append((i, a.data_ptr()))
        graph = torch.cuda.CUDAGraph()
        for gen in self.info.generators:
            if gen.device.type == "cuda":
                graph.register_generator_state(gen)
        before = _host_state()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            outputs = self.fn(*static)
        changed = _host_state() != before
        if changed:  # the capture ran the host switches; undo the net change, replays redo it
            torch.set_grad_enabled(before[0])
            torch.set_autocast_enabled("cuda", before[1])
            torch.set_autocast_enabled("cpu", before[2])
            torch.set_autocast_dtype("cuda", before[3])
            torch.set_autocast_cache_enabled(before[4])
        slot = _Slot()
        slot.graph = graph
        slot.adopted = adopted
        slot.private = private
        slot.copy_back = copy_back
        slot.host_fn = self.info.host_fn if changed else None
        slot.outputs = tuple(outputs)
        input_storages = {}
        for i, a in enumerate(static):
            if isinstance(a, torch.Tensor):
                input_storages[a.untyped_storage().data_ptr()] = (i, a)
        private_ids = {id(buf) for _, buf, _, _ in private}
        plan, tracked = [], {}
        for o, copy in zip(slot.outputs, self.info.copy_out):
            if not isinstance(o, torch.Tensor):
                plan.append(0)
                continue
            owner = input_storages.get(o.untyped_storage().data_ptr())
            if owner is not None:  # a view of an input: adopted ones are the caller's memory
                plan.append(1 if id(owner[1]) in private_ids else 0)
            elif copy:
                plan.append(1)
            else:
                plan.append(2)
                tracked[o.untyped_storage()._cdata] = o
        slot.plan = plan
        slot.output_ptrs = {o.data_ptr() for o in tracked.values()}
        del outputs, static
        # use counts with only this slot holding the outputs: a higher count means a caller holds some
        slot.alive_checks = [(cdata, _use_count(cdata)) for cdata in tracked]
        del tracked
        slot.alive_checks = [(cdata, _use_count(cdata)) for cdata, _ in slot.alive_checks]
        return slot
