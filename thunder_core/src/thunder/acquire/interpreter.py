"""A CPython bytecode interpreter written in Python.

``interpret(fn, args, kwargs, hooks)`` runs ``fn(*args, **kwargs)`` by executing its bytecode here,
instruction by instruction, instead of letting CPython run it.  Because every value the program
reads from outside (globals, attributes, closure cells, subscripts, results of native calls) and
every call it makes passes through this module, a compiler can watch those values and replace
calls (see ``InterpreterHooks``).  Only the standard library is used.

Design
------
*Code objects* are decoded once (``_code_info``, cached per code object): ``dis.get_instructions``
gives the instructions, and each becomes a pair ``(handler, arg)`` where ``handler`` is the Python
function implementing the opcode and ``arg`` is its argument already resolved (a jump becomes the
index of the target instruction, a name the string, a comparison the ``operator`` function...).
The per-instruction line numbers and, on 3.11+, the exception handler of every instruction are
precomputed too.

*Frames* (``_Frame``) hold what CPython's frames hold: the fast locals (``locals``: arguments,
locals, cells and free variables in CPython's "localsplus" order), the value stack, the index of
the next instruction (``ip``) and, for class bodies, the namespace mapping (``locals_dict``).
Pushing ``_NULL`` stands for CPython's NULL stack entries (e.g. "no self" before a call).

*The instruction loop* (``_execute``) fetches ``(handler, arg)`` at ``ip``, advances ``ip`` and calls
``handler(frame, arg)``.  Handlers return ``None``, or ``True`` when the frame returns or yields
(the value is then in ``frame.result``).  Calls made by the program go through ``_call``, which
asks the hooks for a lookaside, interprets Python functions (recursively: a nested ``_execute``) and
calls everything else natively.

*Exceptions* raised by a handler (whether from the program's ``raise``, from natively called code
or from a nested interpreted frame) are caught by the loop and routed the way CPython does it:
on 3.11+ through the code object's exception table (an instruction range maps to a handler target
and a stack depth), on 3.10 through the block stack that SETUP_FINALLY / POP_BLOCK maintain.
The "exception being handled" (``sys.exc_info()``) of interpreted code is kept in ``_state``
(one slot per running generator, like CPython's exc_info chain), and the loop chains
``__context__`` like CPython does.  ``AcquisitionError`` is never routed to a handler: it leaves
the interpreter directly.  The interpreted Python stack at the point an exception was first seen
is recorded on it (``thunder_user_frames``) and turned into a note when it leaves ``interpret``.

*Generators* (and coroutines / async generators): calling an interpreted generator function
returns a real Python generator made by ``_run_generator``, whose loop runs the interpreted frame
until it yields and then yields that value itself.  Values sent in are pushed on the frame's
stack; exceptions thrown in are raised inside the frame (or, while the frame delegates with
``yield from`` / ``await``, thrown into the sub-iterator).  Coroutines and async generators wrap
that generator.  So interpreted generators work wherever a generator is expected, even when
advanced natively (``list(gen)``).

*Versions*: 3.10 to 3.13 are supported.  Opcodes whose meaning differs between versions have one
handler per meaning, and the table at the end of the module (``_OPCODE_TABLES``) says which
handler each version uses.  Other version differences (error messages, the localsplus layout)
are constants in the "Python version differences" section.
"""

from __future__ import annotations

import builtins
import dis
import functools
import linecache
import operator
import sys
import threading
import types
from typing import Callable, NamedTuple

__all__ = ["AcquisitionError", "InterpreterHooks", "Origin", "current_user_frames", "interpret"]


# =================================================================================================
# Public API
# =================================================================================================

class Origin(NamedTuple):
    """Where a value that enters the interpreted program comes from."""

    kind: str      # "global", "builtin", "attr", "item", "cell", "call", "iter", "unpack"
    base: object   # globals dict / object whose attribute was read / container / cell / callable
    key: object    # name / attribute name / subscript key / variable name / index / None


class InterpreterHooks:
    """Subclass and override. The default does nothing special."""

    # Set by the owner once the program it interprets is over (a trace is complete): generators
    # the program left suspended are then dropped when closed (by the garbage collector) instead
    # of running their ``finally`` blocks, which would run outside that program.
    finished = False

    def lookaside(self, fn) -> Callable | None:
        """Called for EVERY call the interpreted program makes (before deciding how to run it),
        with the callable object. Return a replacement callable that is then called NATIVELY
        with the same args/kwargs (its result is NOT passed to on_load), or None for the default."""
        return None

    def on_load(self, value, origin: Origin):
        """Called for every value that enters the interpreted program from outside interpreted code
        (globals, builtins, attributes, cells, subscripts, results of native calls, values of native
        iteration and unpacking). Returns the value the program sees."""
        return value

    def should_interpret(self, fn) -> bool:
        """Whether a Python function should be interpreted (True) or called natively."""
        return True

    def store_attr(self, obj, name: str, value) -> None:
        """``obj.name = value`` in the interpreted program (STORE_ATTR). A compiler overrides this
        to defer stores to objects that outlive the call (they become an epilogue)."""
        setattr(obj, name, value)

    def delete_attr(self, obj, name: str) -> None:
        """``del obj.name`` in the interpreted program (DELETE_ATTR)."""
        delattr(obj, name)

    def store_item(self, container, key, value) -> None:
        """``container[key] = value`` in the interpreted program (STORE_SUBSCR)."""
        container[key] = value

    def delete_item(self, container, key) -> None:
        """``del container[key]`` in the interpreted program (DELETE_SUBSCR)."""
        del container[key]

    def missing_attr(self, obj, name: str):
        """Reading ``obj.name`` raised AttributeError: a value for it (one the program stored,
        which ``store_attr`` deferred), or NotImplemented to raise that error."""
        return NotImplemented


class AcquisitionError(Exception):
    """Base of the compiler's own errors. User try/except blocks in interpreted code do not catch
    these (they propagate straight out); every other exception behaves exactly as in CPython."""


class UnsupportedBytecodeError(AcquisitionError):
    """The program uses a bytecode feature this interpreter does not implement."""


# =================================================================================================
# Python version differences
# =================================================================================================

_PY = sys.version_info[:2]
if not (3, 10) <= _PY <= (3, 13):
    raise ImportError(f"thunder's bytecode interpreter supports Python 3.10 to 3.13, not {_PY}")

# 3.11+ route exceptions with co_exceptiontable; 3.10 with a block stack.
_HAS_EXCEPTION_TABLE = _PY >= (3, 11)
# 3.11+ create cells with MAKE_CELL / COPY_FREE_VARS and index them in localsplus; on 3.10 the
# frame creates them and LOAD_DEREF's argument indexes cellvars + freevars.
_CELLS_MADE_BY_BYTECODE = _PY >= (3, 11)
# COMPARE_OP's argument is the index in dis.cmp_op shifted left by this much (3.13: bit 4 = bool()).
_COMPARE_OP_SHIFT = {(3, 10): 0, (3, 11): 0, (3, 12): 4, (3, 13): 5}[_PY]
_COMPARE_OP_TO_BOOL = 16 if _PY >= (3, 13) else 0
# How far below DICT_MERGE's target dict the called function sits (for error messages).
_DICT_MERGE_FUNCTION_DEPTH = 3 if _PY >= (3, 13) else 2

if _PY >= (3, 11):
    _UNBOUND_LOCAL = "cannot access local variable '{}' where it is not associated with a value"
    _UNBOUND_FREE = ("cannot access free variable '{}' where it is not associated with a value "
                     "in enclosing scope")
else:
    _UNBOUND_LOCAL = "local variable '{}' referenced before assignment"
    _UNBOUND_FREE = "free variable '{}' referenced before assignment in enclosing scope"


def _missing_context_manager_method(mgr, name: str, is_async: bool) -> Exception:
    """The error CPython raises when ``with`` / ``async with`` finds no ``name`` on ``mgr``."""
    if _PY < (3, 11):
        return AttributeError(name)
    protocol = "asynchronous context manager" if is_async else "context manager"
    message = f"'{type(mgr).__name__}' object does not support the {protocol} protocol"
    if _PY >= (3, 13) and name in ("__exit__", "__aexit__"):
        message += f" (missed {name} method)"
    return TypeError(message)


# 3.11+ re-raise an exception with its __traceback__ (3.10 with the one it was caught with).
_BARE_RAISE_USES_EXCEPTION_TRACEBACK = _PY >= (3, 11)

# Code flags (stable since 3.5; see inspect.CO_*).
_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08
_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x80
_CO_ITERABLE_COROUTINE = 0x100
_CO_ASYNC_GENERATOR = 0x200

# Type flags used by pattern matching (Py_TPFLAGS_SEQUENCE / _MAPPING / _Py_TPFLAGS_MATCH_SELF).
_TPFLAGS_SEQUENCE = 1 << 5
_TPFLAGS_MAPPING = 1 << 6
_TPFLAGS_MATCH_SELF = 1 << 22


class _NullType:
    """CPython's NULL: an empty stack slot, an unbound local, "no self" before a call."""

    __slots__ = ()

    def __repr__(self):
        return "<NULL>"


_NULL = _NullType()

_FunctionType = types.FunctionType
_MethodType = types.MethodType
_CellType = types.CellType
_GeneratorType = types.GeneratorType
_CoroutineType = types.CoroutineType
_TYPE_CALL = type.__call__
_BaseExceptionGroup = getattr(builtins, "BaseExceptionGroup", None)  # 3.11+
_ExceptionGroup = getattr(builtins, "ExceptionGroup", None)
_NATIVE_CALLABLE_TYPES = frozenset({
    types.BuiltinFunctionType, types.WrapperDescriptorType, types.MethodWrapperType,
    types.MethodDescriptorType, types.ClassMethodDescriptorType,
})


# =================================================================================================
# Thread state: the running interpreted frames and the handled-exception chain
# =================================================================================================

class _ThreadState(threading.local):
    def __init__(self):
        # interpreted frames now running in this thread, outermost first
        self.frames: list[_Frame] = []
        # CPython's exc_info chain: the exception being handled, one slot for the thread and one
        # per running interpreted generator; the innermost non-None entry is sys.exc_info()
        self.exc_chain: list[BaseException | None] = [None]


_state = _ThreadState()


def current_user_frames() -> list[tuple[str, int, str]]:
    """(filename, lineno, function name) of the interpreted frames now running, outermost first."""
    return [(f.code.co_filename, f.info.lines[f.ip - 1 if f.ip else 0], f.code.co_name)
            for f in _state.frames]


def _current_frame():
    frames = _state.frames
    return frames[-1] if frames else None


def _handled_exception():
    """What sys.exc_info() would return inside the interpreted program (CPython's
    _PyErr_GetTopmostException)."""
    for exc in reversed(_state.exc_chain):
        if exc is not None:
            return exc
    return None


def _chain_context(exc, handled) -> None:
    """Sets ``exc.__context__ = handled`` like CPython does when raising while handling, cutting
    any cycle that would make ``exc`` its own context."""
    if handled is None or handled is exc:
        return
    seen = set()
    link = handled
    while id(link) not in seen:
        seen.add(id(link))
        context = link.__context__
        if context is None:
            break
        if context is exc:
            link.__context__ = None
            break
        link = context
    exc.__context__ = handled


# =================================================================================================
# Decoding code objects
# =================================================================================================

class _CodeInfo:
    """What the interpreter precomputes about a code object."""

    __slots__ = (
        "instructions",   # [(handler, arg)] per instruction
        "lines",          # line number per instruction
        "handlers",       # 3.11+: per instruction, (target index, stack depth, push lasti) or None
        "nlocals",        # number of fast-local slots (CPython's localsplus)
        "slot_names",     # name of each slot
        "cell_slots",     # slots holding cells (cellvars and freevars)
        "keyword_slots",  # parameter name -> slot, for parameters that can be passed by keyword
        "simple_args",    # no *args, **kwargs or keyword-only parameters
        "unbound_tail",   # [_NULL] * (nlocals - co_argcount): the locals after positional args
        "cell_init",      # 3.10 only: (cell slot, argument slot or None) for each cellvar
        "first_arg_slot",   # where super() finds its first argument
        "class_cell_slot",  # slot of the __class__ free variable, or None
    )


_CODE_CACHE: dict[int, tuple[types.CodeType, _CodeInfo]] = {}


def _code_info(code: types.CodeType) -> _CodeInfo:
    """The decoded form of ``code``, decoded on first use.  Keyed by id (hashing a code object
    hashes all its constants); the entry keeps the code object alive so the id stays valid."""
    entry = _CODE_CACHE.get(id(code))
    if entry is not None and entry[0] is code:
        return entry[1]
    info = _decode(code)
    _CODE_CACHE[id(code)] = (code, info)
    return info


class _Decoder:
    """What opcode argument preparers may look at while a code object is being decoded."""

    def __init__(self, code, raw, deref_base):
        self.code = code
        self.raw = raw
        self.index_of = {inst.offset: i for i, inst in enumerate(raw)}
        self.deref_base = deref_base


def _decode(code: types.CodeType) -> _CodeInfo:
    info = _CodeInfo()
    varnames = code.co_varnames
    if _CELLS_MADE_BY_BYTECODE:
        own_cells = [name for name in code.co_cellvars if name not in varnames]
        info.slot_names = [*varnames, *own_cells, *code.co_freevars]
        info.cell_slots = frozenset(
            [info.slot_names.index(name) for name in code.co_cellvars]
            + list(range(len(info.slot_names) - len(code.co_freevars), len(info.slot_names))))
        deref_base = 0
    else:
        info.slot_names = [*varnames, *code.co_cellvars, *code.co_freevars]
        info.cell_slots = frozenset(range(len(varnames), len(info.slot_names)))
        deref_base = len(varnames)
    info.nlocals = len(info.slot_names)

    nparams = code.co_argcount + code.co_kwonlyargcount
    info.keyword_slots = {varnames[i]: i for i in range(code.co_posonlyargcount, nparams)}
    info.simple_args = not (code.co_flags & (_CO_VARARGS | _CO_VARKEYWORDS)) and not code.co_kwonlyargcount
    info.unbound_tail = [_NULL] * (info.nlocals - code.co_argcount)

    if not _CELLS_MADE_BY_BYTECODE:
        nargs = nparams + bool(code.co_flags & _CO_VARARGS) + bool(code.co_flags & _CO_VARKEYWORDS)
        arg_names = varnames[:nargs]
        info.cell_init = [(len(varnames) + j, arg_names.index(name) if name in arg_names else None)
                          for j, name in enumerate(code.co_cellvars)]
    info.first_arg_slot = 0
    if varnames and varnames[0] in code.co_cellvars and not _CELLS_MADE_BY_BYTECODE:
        info.first_arg_slot = len(varnames) + code.co_cellvars.index(varnames[0])
    info.class_cell_slot = None
    if "__class__" in code.co_freevars:
        info.class_cell_slot = info.nlocals - len(code.co_freevars) + code.co_freevars.index("__class__")

    raw = list(dis.get_instructions(code))
    decoder = _Decoder(code, raw, deref_base)
    instructions = []
    for i, inst in enumerate(raw):
        entry = _OPCODES.get(inst.opname)
        if entry is None:
            instructions.append((_op_unsupported, inst.opname))
        else:
            handler, prepare = entry
            instructions.append((handler, prepare(inst, i, decoder) if prepare is not None else None))
    info.instructions = instructions
    info.lines = _line_numbers(code, raw)
    info.handlers = _exception_handlers(code, decoder) if _HAS_EXCEPTION_TABLE else None
    return info


def _line_numbers(code, raw) -> list[int]:
    """The source line of each instruction (instructions without one inherit the previous line)."""
    ranges = iter(code.co_lines())
    current = next(ranges, None)
    line = code.co_firstlineno
    lines = []
    for inst in raw:
        while current is not None and current[1] <= inst.offset:
            current = next(ranges, None)
        if current is not None and current[0] <= inst.offset and current[2] is not None:
            line = current[2]
        lines.append(line)
    return lines


def _parse_exception_table(code) -> list[tuple[int, int, int, int, bool]]:
    """(start, end, target, depth, lasti) entries of co_exceptiontable (offsets in bytes).

    Each entry is four varints; a varint is big-endian 6-bit chunks with bit 6 set on every chunk
    but the last (bit 7 marks the first byte of an entry).  See CPython's
    Objects/exception_handling_notes.txt."""
    data = code.co_exceptiontable
    pos = 0

    def varint():
        nonlocal pos
        byte = data[pos]
        pos += 1
        value = byte & 63
        while byte & 64:
            byte = data[pos]
            pos += 1
            value = (value << 6) | (byte & 63)
        return value

    entries = []
    while pos < len(data):
        start = varint() * 2
        end = start + varint() * 2
        target = varint() * 2
        depth_lasti = varint()
        entries.append((start, end, target, depth_lasti >> 1, bool(depth_lasti & 1)))
    return entries


def _exception_handlers(code, decoder: _Decoder) -> list:
    """For each instruction, the handler covering it.  Table entries are sorted and disjoint."""
    entries = _parse_exception_table(code)
    handlers = [None] * len(decoder.raw)
    j = 0
    for i, inst in enumerate(decoder.raw):
        while j < len(entries) and entries[j][1] <= inst.offset:
            j += 1
        if j < len(entries) and entries[j][0] <= inst.offset:
            _, _, target, depth, lasti = entries[j]
            handlers[i] = (decoder.index_of[target], depth, lasti)
    return handlers


# Argument preparers: (dis.Instruction, index, _Decoder) -> the arg passed to the handler.

def _arg(inst, i, d):
    return inst.arg


def _fixed(value):
    """A preparer giving every instruction of this opcode the same argument."""
    return lambda inst, i, d: value


def _argval(inst, i, d):
    return inst.argval


def _const(inst, i, d):
    return d.code.co_consts[inst.arg]


def _jump(inst, i, d):
    return d.index_of[inst.argval]


def _deref(inst, i, d):
    return inst.arg + d.deref_base


def _name_and_flag(inst, i, d):
    """LOAD_GLOBAL (3.11+: bit 0 = also push NULL) and LOAD_ATTR (3.12+: bit 0 = method load)."""
    return inst.argval, inst.arg & 1


def _super_attr(inst, i, d):
    return inst.argval, inst.arg & 1, inst.arg & 2


def _two_slots(inst, i, d):
    """3.13's superinstructions pack two local indices in one argument."""
    return inst.arg >> 4, inst.arg & 15


def _compare(inst, i, d):
    op = _COMPARE_OPS[inst.arg >> _COMPARE_OP_SHIFT]
    if inst.arg & _COMPARE_OP_TO_BOOL:
        return _COMPARE_OPS_TO_BOOL[op]
    return op


def _binary_op(inst, i, d):
    return _BINARY_OPS[inst.arg]


def _unpack_ex(inst, i, d):
    return inst.arg & 0xFF, inst.arg >> 8


def _format_value(inst, i, d):
    return _CONVERSIONS[inst.arg & 3], bool(inst.arg & 4)


def _conversion(inst, i, d):
    return _CONVERSIONS[inst.arg]


def _for_iter_target(inst, i, d):
    """3.12+: FOR_ITER's argument counts from the next instruction and lands on END_FOR (dis
    versions disagree on which target they show, so it is computed here)."""
    return d.index_of[d.raw[i + 1].offset + 2 * inst.arg]


def _yield_value(inst, i, d):
    """3.11+: the index of the SEND this yield belongs to (``yield from`` / ``await``), or None."""
    return i - 1 if i and d.raw[i - 1].opname == "SEND" else None


def _intrinsic_1(inst, i, d):
    return _INTRINSICS_1.get(inst.arg) or _unsupported_intrinsic(f"CALL_INTRINSIC_1 {inst.arg}")


def _intrinsic_2(inst, i, d):
    return _INTRINSICS_2.get(inst.arg) or _unsupported_intrinsic(f"CALL_INTRINSIC_2 {inst.arg}")


def _unsupported_intrinsic(what):
    def intrinsic(frame, *args):
        raise UnsupportedBytecodeError(f"the interpreter does not implement {what}")
    return intrinsic


# =================================================================================================
# Frames and argument binding
# =================================================================================================

class _Frame:
    """The state of one interpreted call (see the module docstring)."""

    __slots__ = ("ctx", "func", "code", "info", "globals", "builtins", "locals", "locals_dict",
                 "stack", "ip", "blocks", "kw_names", "result", "yielding", "pending_exception",
                 "pending_throw", "delegate_ip", "gen_exc", "is_generator")

    def __init__(self, ctx, func, code, info, fast_locals, locals_dict=None):
        self.ctx = ctx
        self.func = func
        self.code = code
        self.info = info
        self.globals = func.__globals__
        self.builtins = func.__builtins__
        self.locals = fast_locals
        self.locals_dict = locals_dict       # the namespace of a class body
        self.stack = []
        self.ip = 0
        self.blocks = []                     # 3.10's block stack: (kind, handler index, level)
        self.kw_names = None                 # 3.11/3.12: names set by KW_NAMES for the next CALL
        self.result = None                   # the value returned or yielded
        self.yielding = False                # whether the last stop was a yield
        self.pending_exception = None        # raised in the frame when it resumes (gen.throw)
        self.pending_throw = None            # thrown into the sub-iterator by the next SEND
        self.delegate_ip = None              # the SEND / YIELD_FROM the frame is suspended in
        self.gen_exc = None                  # a generator's own handled exception
        self.is_generator = False
        if not _CELLS_MADE_BY_BYTECODE:
            self._make_cells_310(func.__closure__)

    def _make_cells_310(self, closure):
        fast_locals = self.locals
        for cell_slot, arg_slot in self.info.cell_init:
            value = _NULL if arg_slot is None else fast_locals[arg_slot]
            fast_locals[cell_slot] = _CellType() if value is _NULL else _CellType(value)
            if arg_slot is not None:
                fast_locals[arg_slot] = _NULL
        if closure:
            fast_locals[self.info.nlocals - len(closure):] = closure


def _bind_arguments(fn, code, info, args, kwargs) -> list:
    """The fast locals of a call of ``fn``: parameters bound like CPython binds them."""
    if not kwargs and info.simple_args and len(args) == code.co_argcount:
        return [*args, *info.unbound_tail]
    return _bind_arguments_slow(fn, code, info, args, kwargs)


def _bind_arguments_slow(fn, code, info, args, kwargs) -> list:
    name = fn.__qualname__
    argcount = code.co_argcount
    nparams = argcount + code.co_kwonlyargcount
    varnames = code.co_varnames
    fast_locals = [_NULL] * info.nlocals
    given = len(args)
    fast_locals[:min(given, argcount)] = args[:argcount]
    slot = nparams
    if code.co_flags & _CO_VARARGS:
        fast_locals[slot] = tuple(args[argcount:])
        slot += 1
    extra_kwargs = None
    if code.co_flags & _CO_VARKEYWORDS:
        extra_kwargs = fast_locals[slot] = {}

    for key, value in (kwargs or {}).items():
        if not isinstance(key, str):
            raise TypeError("keywords must be strings")
        param = info.keyword_slots.get(key)
        if param is None:
            if extra_kwargs is not None:
                extra_kwargs[key] = value
                continue
            posonly = [k for k in kwargs if k in varnames[:code.co_posonlyargcount]]
            if posonly:
                raise TypeError(f"{name}() got some positional-only arguments passed as keyword "
                                f"arguments: '{', '.join(posonly)}'")
            raise TypeError(f"{name}() got an unexpected keyword argument '{key}'")
        if fast_locals[param] is not _NULL:
            raise TypeError(f"{name}() got multiple values for argument '{key}'")
        fast_locals[param] = value

    defaults = fn.__defaults__ or ()
    if given > argcount and not code.co_flags & _CO_VARARGS:
        kwonly_given = sum(v is not _NULL for v in fast_locals[argcount:nparams])
        if defaults:
            takes, plural = f"from {argcount - len(defaults)} to {argcount}", "s"
        else:
            takes, plural = str(argcount), "" if argcount == 1 else "s"
        kwonly = ""
        if kwonly_given:
            kwonly = (f" positional argument{'s' if given != 1 else ''} (and {kwonly_given} "
                      f"keyword-only argument{'s' if kwonly_given != 1 else ''})")
        was = "was" if given == 1 and not kwonly_given else "were"
        raise TypeError(f"{name}() takes {takes} positional argument{plural} but {given}{kwonly} {was} given")

    if given < argcount:
        first_default = argcount - len(defaults)
        missing = [varnames[i] for i in range(given, first_default) if fast_locals[i] is _NULL]
        if missing:
            raise TypeError(_missing_arguments_message(name, missing, "positional"))
        for i in range(max(given, first_default), argcount):
            if fast_locals[i] is _NULL:
                fast_locals[i] = defaults[i - first_default]

    if code.co_kwonlyargcount:
        kwdefaults = fn.__kwdefaults__ or {}
        missing = []
        for i in range(argcount, nparams):
            if fast_locals[i] is _NULL:
                if varnames[i] in kwdefaults:
                    fast_locals[i] = kwdefaults[varnames[i]]
                else:
                    missing.append(varnames[i])
        if missing:
            raise TypeError(_missing_arguments_message(name, missing, "keyword-only"))
    return fast_locals


def _missing_arguments_message(name, missing, kind) -> str:
    quoted = [repr(m) for m in missing]
    if len(quoted) == 1:
        listed = quoted[0]
    elif len(quoted) == 2:
        listed = f"{quoted[0]} and {quoted[1]}"
    else:
        listed = ", ".join(quoted[:-1]) + ", and " + quoted[-1]
    return f"{name}() missing {len(missing)} required {kind} argument{'s' if len(missing) > 1 else ''}: {listed}"


# =================================================================================================
# Calls
# =================================================================================================

class _Context:
    """The hooks of one interpret() call, with the hook methods that are not overridden set to
    None so the hot paths can skip them."""

    __slots__ = ("hooks", "lookaside", "on_load", "should_interpret")

    def __init__(self, hooks: InterpreterHooks):
        cls = type(hooks)
        self.hooks = hooks
        self.lookaside = hooks.lookaside if cls.lookaside is not InterpreterHooks.lookaside else None
        self.on_load = hooks.on_load if cls.on_load is not InterpreterHooks.on_load else None
        self.should_interpret = (hooks.should_interpret
                                 if cls.should_interpret is not InterpreterHooks.should_interpret else None)


def _call(ctx: _Context, fn, args, kwargs):
    """Performs a call the interpreted program makes: ``fn(*args, **kwargs)``.

    The hooks' lookaside comes first.  Python functions are interpreted; bound methods, partials,
    staticmethods and objects with a Python ``__call__`` are taken apart (and the parts offered to
    the lookaside again) so that their Python code is interpreted, and so is instance creation of
    classes with a Python ``__init__`` / ``__new__``.  Everything else runs natively, and its
    result goes through on_load.  (A loop rather than recursion keeps the Python stack short.)"""
    lookaside = ctx.lookaside
    while True:
        if lookaside is not None:
            replacement = lookaside(fn)
            if replacement is not None:
                return replacement(*args, **kwargs) if kwargs else replacement(*args)
        t = type(fn)
        if t is _FunctionType:
            code = fn.__code__
            flags = code.co_flags
            # (types.coroutine generators must be real generators with that flag to be awaitable)
            if (ctx.should_interpret is not None and not ctx.should_interpret(fn)) or flags & _CO_ITERABLE_COROUTINE:
                return _call_native(ctx, fn, args, kwargs)
            info = _code_info(code)
            frame = _Frame(ctx, fn, code, info, _bind_arguments(fn, code, info, args, kwargs))
            if flags & (_CO_GENERATOR | _CO_COROUTINE | _CO_ASYNC_GENERATOR):
                return _make_generator_like(frame, fn, flags)
            return _execute(frame)
        if t is _MethodType:
            fn, args = fn.__func__, (fn.__self__, *args)
        elif t is functools.partial:
            fn, args, kwargs = fn.func, (*fn.args, *args), ({**fn.keywords, **kwargs} if kwargs else fn.keywords)
        elif t is staticmethod:
            fn = fn.__func__
        else:
            special = _INTERNAL_LOOKASIDES.get(id(fn))
            if special is not None and special[0] is fn:
                return special[1](ctx, args, kwargs)
            if t in _NATIVE_CALLABLE_TYPES:
                return _call_native(ctx, fn, args, kwargs)
            call = _lookup_special(t, "__call__")
            if type(call) is _FunctionType:
                fn, args = call, (fn, *args)
            elif call is _TYPE_CALL:
                return _construct(ctx, fn, args, kwargs)
            else:
                return _call_native(ctx, fn, args, kwargs)


def _call_native(ctx, fn, args, kwargs):
    result = fn(*args, **kwargs) if kwargs else fn(*args)
    if ctx.on_load is not None:
        result = ctx.on_load(result, Origin("call", fn, None))
    return result


def _construct(ctx, cls, args, kwargs):
    """``cls(*args, **kwargs)`` for a class whose metaclass does not override ``__call__``:
    what type.__call__ does, so that a Python ``__new__`` / ``__init__`` is interpreted."""
    new = _lookup_special(cls, "__new__")
    if type(new) is staticmethod:
        new = new.__func__
    init = _lookup_special(cls, "__init__")
    if type(new) is not _FunctionType and type(init) is not _FunctionType:
        return _call_native(ctx, cls, args, kwargs)
    obj = _call(ctx, new, (cls, *args), kwargs)
    if cls not in type(obj).__mro__:
        return obj
    result = _call(ctx, _lookup_special(type(obj), "__init__"), (obj, *args), kwargs)
    if result is not None:
        raise TypeError(f"__init__() should return None, not '{type(result).__name__}'")
    return obj


def _lookup_special(cls, name):
    """``name`` looked up on the type like CPython looks up special methods (MRO dicts only)."""
    for klass in cls.__mro__:
        value = klass.__dict__.get(name, _NULL)
        if value is not _NULL:
            return value
    return _NULL


def _bind(descriptor, obj):
    """``descriptor`` (found on type(obj)) bound to ``obj``."""
    get = getattr(type(descriptor), "__get__", None)
    return descriptor if get is None else get(descriptor, obj, type(obj))


def _function_str(fn) -> str:
    """How CPython names a callable in call errors (_PyObject_FunctionStr)."""
    qualname = getattr(fn, "__qualname__", None)
    if qualname is None:
        return str(fn)
    module = getattr(fn, "__module__", None)
    if module is not None and module != "builtins":
        return f"{module}.{qualname}()"
    return f"{qualname}()"


def _call_with_star_args(frame, fn, args, kwargs):
    """CALL_FUNCTION_EX: ``fn(*args, **kwargs)`` with CPython's argument checks."""
    if type(args) is not tuple:
        if _not_iterable(args):
            raise TypeError(f"{_function_str(fn)} argument after * must be an iterable, not {type(args).__name__}")
        args = tuple(args)
    if kwargs is not None and type(kwargs) is not dict:
        if not hasattr(type(kwargs), "keys"):
            raise TypeError(f"{_function_str(fn)} argument after ** must be a mapping, not {type(kwargs).__name__}")
        kwargs = {key: kwargs[key] for key in kwargs.keys()}
    return _call(frame.ctx, fn, args, kwargs or None)


def _not_iterable(obj) -> bool:
    t = type(obj)
    return not hasattr(t, "__iter__") and not hasattr(t, "__getitem__")


# =================================================================================================
# Internal lookasides: builtins that look at their caller's frame
# =================================================================================================

def _super_lookaside(ctx, args, kwargs):
    """Zero-argument super() finds the class in the __class__ cell and the instance in the first
    argument of the calling (interpreted) frame."""
    frame = _current_frame()
    if args or kwargs or frame is None:
        return _call_native(ctx, super, args, kwargs)
    info = frame.info
    if frame.code.co_argcount == 0:
        raise RuntimeError("super(): no arguments")
    first = frame.locals[info.first_arg_slot]
    if info.first_arg_slot in info.cell_slots and type(first) is _CellType:
        first = _cell_get(first)
    if first is _NULL:
        raise RuntimeError("super(): arg[0] deleted")
    if info.class_cell_slot is None:
        raise RuntimeError("super(): __class__ cell not found")
    cls = _cell_get(frame.locals[info.class_cell_slot])
    if cls is _NULL:
        raise RuntimeError("super(): empty __class__ cell")
    return _call_native(ctx, super, (cls, first), None)


def _build_class_lookaside(ctx, args, kwargs):
    """``class`` statements: what builtins.__build_class__ does, with the body interpreted."""
    if len(args) < 2 or type(args[0]) is not _FunctionType or not isinstance(args[1], str):
        return _call_native(ctx, builtins.__build_class__, args, kwargs)
    body, name, *bases = args
    if ctx.should_interpret is not None and not ctx.should_interpret(body):
        return _call_native(ctx, builtins.__build_class__, args, kwargs)
    orig_bases = tuple(bases)
    bases = types.resolve_bases(orig_bases)
    meta, namespace, class_kwargs = types.prepare_class(name, bases, kwargs)
    code = body.__code__
    info = _code_info(code)
    cell = _execute(_Frame(ctx, body, code, info, [_NULL] * info.nlocals, namespace))
    if bases is not orig_bases:
        namespace["__orig_bases__"] = orig_bases
    cls = _call(ctx, meta, (name, bases, namespace), class_kwargs or None)
    if isinstance(cls, type) and type(cell) is _CellType:
        cell_cls = _cell_get(cell)
        if cell_cls is _NULL:
            raise RuntimeError(f"__class__ not set defining {name!r} as {cls!r}. "
                               "Was __classcell__ propagated to type.__new__?")
        if cell_cls is not cls:
            raise TypeError(f"__class__ set to {cell_cls!r} defining {name!r} as {cls!r}")
    return cls


def _frame_locals(frame) -> dict:
    """What locals() returns in ``frame``."""
    if frame.locals_dict is not None:
        return frame.locals_dict
    result = {}
    cell_slots = frame.info.cell_slots
    for slot, name in enumerate(frame.info.slot_names):
        value = frame.locals[slot]
        if slot in cell_slots and type(value) is _CellType:
            value = _cell_get(value)
        if value is not _NULL:
            result[name] = value
    return result


def _caller_scope_lookaside(native, make):
    """A lookaside for a builtin that, called without arguments, looks at its caller's scope."""
    def lookaside(ctx, args, kwargs):
        frame = _current_frame()
        if args or kwargs or frame is None:
            return _call_native(ctx, native, args, kwargs)
        return make(frame)
    return lookaside


def _eval_lookaside(native):
    """eval / exec without explicit globals run in the calling interpreted frame's scope."""
    def lookaside(ctx, args, kwargs):
        frame = _current_frame()
        kwargs = dict(kwargs or {})

        def given(position, name):
            return args[position] if len(args) > position else kwargs.pop(name, None)

        if frame is None or not args:
            return _call_native(ctx, native, args, kwargs)
        globals_, locals_ = given(1, "globals"), given(2, "locals")
        if globals_ is None:
            globals_ = frame.globals
            if locals_ is None:
                locals_ = _frame_locals(frame)
        return _call_native(ctx, native, (args[0], globals_, locals_, *args[3:]), kwargs)
    return lookaside


def _exc_info_lookaside(ctx, args, kwargs):
    exc = _handled_exception()
    return (None, None, None) if exc is None else (type(exc), exc, exc.__traceback__)


def _exception_lookaside(ctx, args, kwargs):
    return _handled_exception()


_INTERNAL_LOOKASIDES = {id(fn): (fn, lookaside) for fn, lookaside in [
    (super, _super_lookaside),
    (builtins.__build_class__, _build_class_lookaside),
    (builtins.globals, _caller_scope_lookaside(builtins.globals, lambda frame: frame.globals)),
    (builtins.locals, _caller_scope_lookaside(builtins.locals, _frame_locals)),
    (builtins.vars, _caller_scope_lookaside(builtins.vars, _frame_locals)),
    (builtins.dir, _caller_scope_lookaside(builtins.dir, lambda frame: sorted(_frame_locals(frame)))),
    (builtins.eval, _eval_lookaside(builtins.eval)),
    (builtins.exec, _eval_lookaside(builtins.exec)),
    (sys.exc_info, _exc_info_lookaside),
    *([(sys.exception, _exception_lookaside)] if hasattr(sys, "exception") else []),
]}


# =================================================================================================
# Running frames and routing exceptions
# =================================================================================================

def _execute(frame):
    """Runs ``frame`` until it returns or yields; returns the value.  This is the instruction
    loop; exceptions are routed outside the ``except`` clause, so that the interpreter itself is
    not "handling" them while the program's handler runs."""
    state = _state
    state.frames.append(frame)
    is_generator = frame.is_generator
    if is_generator:
        state.exc_chain.append(frame.gen_exc)
    instructions = frame.info.instructions
    exc = frame.pending_exception
    frame.pending_exception = None
    try:
        while True:
            if exc is None:
                try:
                    while True:
                        handler, arg = instructions[frame.ip]
                        frame.ip += 1
                        if handler(frame, arg):
                            return frame.result
                except BaseException as e:
                    exc = e
            if not _route_exception(frame, exc):
                raise exc
            exc = None
    finally:
        if is_generator:
            frame.gen_exc = state.exc_chain.pop()
        state.frames.pop()


def _route_exception(frame, exc) -> bool:
    """Sends ``exc``, raised by the instruction before ``frame.ip``, to its handler in ``frame``.
    Returns False when the frame has no handler for it (it then propagates to the caller)."""
    if getattr(exc, "thunder_user_frames", None) is None:
        try:
            exc.thunder_user_frames = current_user_frames()
        except (AttributeError, TypeError):  # an exception type that refuses new attributes
            pass
    if isinstance(exc, AcquisitionError):
        return False
    if exc.__context__ is None:
        _chain_context(exc, _handled_exception())
    return _route_by_exception_table(frame, exc) if _HAS_EXCEPTION_TABLE else _route_by_block_stack(frame, exc)


def _route_by_exception_table(frame, exc) -> bool:
    """3.11+: the exception table gives the handler and the stack depth to unwind to."""
    i = frame.ip - 1
    entry = frame.info.handlers[i]
    if entry is None:
        return False
    target, depth, push_lasti = entry
    stack = frame.stack
    del stack[depth:]
    if push_lasti:
        stack.append(i)
    stack.append(exc)
    frame.ip = target
    return True


_SETUP_FINALLY = "finally"
_EXCEPT_HANDLER = "except"


def _route_by_block_stack(frame, exc) -> bool:
    """3.10: pop blocks until a SETUP_FINALLY one; its handler gets the previously handled
    exception and the new one (each as traceback, value, type) on the stack."""
    blocks = frame.blocks
    stack = frame.stack
    chain = _state.exc_chain
    while blocks:
        kind, handler, level = blocks.pop()
        if kind is _EXCEPT_HANDLER:
            del stack[level + 3:]
            stack.pop()
            chain[-1] = stack.pop()
            stack.pop()
            continue
        del stack[level:]
        blocks.append((_EXCEPT_HANDLER, None, len(stack)))
        previous = chain[-1]
        if previous is None:
            stack.extend((None, None, None))
        else:
            stack.extend((previous.__traceback__, previous, type(previous)))
        chain[-1] = exc
        stack.extend((exc.__traceback__, exc, type(exc)))
        frame.ip = handler
        return True
    return False


def _exception_matches(exc_type, spec) -> bool:
    """``except spec`` matching (PyErr_GivenExceptionMatches: no __subclasscheck__ hooks)."""
    if type(spec) is tuple:
        return any(_exception_matches(exc_type, s) for s in spec)
    return spec in exc_type.__mro__


def _check_except_type(spec) -> None:
    for s in (spec if type(spec) is tuple else (spec,)):
        if not (isinstance(s, type) and issubclass(s, BaseException)):
            raise TypeError("catching classes that do not inherit from BaseException is not allowed")


def _make_exception(value, message):
    """What ``raise value`` raises: an exception instance (instantiating an exception class)."""
    if isinstance(value, type) and issubclass(value, BaseException):
        instance = value()
        if not isinstance(instance, BaseException):
            raise TypeError(f"calling {value!r} should have returned an instance of BaseException, "
                            f"not {type(instance).__name__}")
        return instance
    if isinstance(value, BaseException):
        return value
    raise TypeError(message)


# =================================================================================================
# Generators, coroutines and async generators
# =================================================================================================

def _make_generator_like(frame, fn, flags):
    """What calling an interpreted generator / coroutine / async generator function returns."""
    frame.is_generator = True
    if flags & _CO_COROUTINE:
        result = _run_coroutine(frame)
    elif flags & _CO_ASYNC_GENERATOR:
        return _InterpretedAsyncGenerator(frame, fn)
    else:
        result = _run_generator(frame)
    result.__name__ = fn.__name__
    result.__qualname__ = fn.__qualname__
    return result


def _run_generator(frame):
    """The body of the real generator that stands for an interpreted generator frame."""
    while True:
        value = _execute(frame)
        if not frame.yielding:
            return value
        try:
            sent = yield value
        except BaseException as exc:  # gen.throw() / gen.close()
            if isinstance(exc, GeneratorExit) and frame.ctx.hooks.finished:
                return
            if frame.delegate_ip is None:
                frame.pending_exception = exc
            else:
                # suspended in `yield from` / `await`: re-run the SEND, which throws into the
                # sub-iterator (CPython's gen_throw does the same)
                frame.ip = frame.delegate_ip
                frame.stack.append(None)
                frame.pending_throw = exc
        else:
            frame.stack.append(sent)


_RUN_GENERATOR_CODE = _run_generator.__code__


def _is_interpreted_generator(obj) -> bool:
    return type(obj) is _GeneratorType and obj.gi_code is _RUN_GENERATOR_CODE


class _FrameAwaitable:
    __slots__ = ("frame",)

    def __init__(self, frame):
        self.frame = frame

    def __await__(self):
        return _run_generator(self.frame)


async def _run_coroutine(frame):
    """The body of the real coroutine that stands for an interpreted coroutine frame."""
    return await _FrameAwaitable(frame)


class _AsyncGenValue:
    """A value yielded by ``yield`` (not passed through by ``await``) in an async generator."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class _InterpretedAsyncGenerator:
    """Stands for an interpreted async generator frame (the async iterator protocol on top of
    the frame's ``_run_generator``: values it yields are either ``_AsyncGenValue`` items of the
    iteration or values passed through to the event loop by ``await``)."""

    def __init__(self, frame, fn):
        self._driver = _run_generator(frame)
        self._finished = False
        self.__name__ = fn.__name__
        self.__qualname__ = fn.__qualname__

    def __aiter__(self):
        return self

    def __anext__(self):
        return _AsyncGenStep(self, "send", None)

    def asend(self, value):
        return _AsyncGenStep(self, "send", value)

    def athrow(self, typ, val=None, tb=None):
        exc = typ if isinstance(typ, BaseException) else (typ() if val is None else val)
        return _AsyncGenStep(self, "throw", exc.with_traceback(tb) if tb is not None else exc)

    def aclose(self):
        return _AsyncGenStep(self, "close", None)

    def __repr__(self):
        return f"<interpreted async_generator object {self.__qualname__} at {id(self):#x}>"


class _AsyncGenStep:
    """The awaitable returned by asend / athrow / aclose / __anext__."""

    __slots__ = ("agen", "mode", "value")

    def __init__(self, agen, mode, value):
        self.agen, self.mode, self.value = agen, mode, value

    def __await__(self):
        return _async_gen_step(self.agen, self.mode, self.value)


def _async_gen_step(agen, mode, value):
    if agen._finished:
        if mode == "close":
            return None
        raise StopAsyncIteration
    driver = agen._driver
    try:
        if mode == "send":
            out = driver.send(value)
        else:
            out = driver.throw(GeneratorExit() if mode == "close" else value)
        while type(out) is not _AsyncGenValue:
            try:
                sent = yield out
            except BaseException as exc:
                out = driver.throw(exc)
            else:
                out = driver.send(sent)
    except StopIteration:
        agen._finished = True
        if mode == "close":
            return None
        raise StopAsyncIteration from None
    except GeneratorExit:
        agen._finished = True
        if mode == "close":
            return None
        raise
    except BaseException:
        agen._finished = True
        raise
    if mode == "close":
        raise RuntimeError("async generator ignored GeneratorExit")
    return out.value


def _get_awaitable_iter(obj):
    """The iterator ``await obj`` delegates to (_PyCoro_GetAwaitableIter)."""
    t = type(obj)
    if t is _CoroutineType or (t is _GeneratorType and obj.gi_code.co_flags & _CO_ITERABLE_COROUTINE):
        return obj
    await_ = _lookup_special(t, "__await__")
    if await_ is _NULL:
        raise TypeError(f"object {t.__name__} can't be used in 'await' expression")
    it = await_(obj)
    if type(it) is _CoroutineType:
        raise TypeError("__await__() returned a coroutine")
    if not hasattr(type(it), "__next__"):
        raise TypeError(f"__await__() returned non-iterator of type '{type(it).__name__}'")
    return it


def _send(frame, it, value):
    """One step of ``yield from`` / ``await``: sends ``value`` into ``it`` or, when the generator
    was thrown into while delegating, throws that exception into ``it`` (what CPython's gen_throw
    does).  Returns (done, value)."""
    exc = frame.pending_throw
    if exc is not None:
        frame.pending_throw = None
        if isinstance(exc, GeneratorExit):
            close = getattr(it, "close", None)
            if close is not None:
                close()
            raise exc
        step = getattr(it, "throw", None)
        if step is None:
            raise exc
        value = exc
    elif value is None and type(it) is not _GeneratorType and type(it) is not _CoroutineType:
        step, value = next, it
    else:
        step = it.send
    try:
        return False, step(value)
    except StopIteration as stop:
        return True, stop.value


# =================================================================================================
# Opcode handlers
# =================================================================================================
# Each handler is handler(frame, arg) with the arg prepared at decode time.  They return True
# only to stop the frame (return / yield).  Handlers never raise from inside an `except` clause,
# so that no internal exception becomes the __context__ of the program's exceptions.

def _op_nop(frame, arg):
    pass


def _op_unsupported(frame, opname):
    raise UnsupportedBytecodeError(f"the interpreter does not implement the {opname} opcode")


# -- stack manipulation ---------------------------------------------------------------------------

def _op_pop_top(frame, arg):
    frame.stack.pop()


def _op_push_null(frame, arg):
    frame.stack.append(_NULL)


def _op_copy(frame, n):
    frame.stack.append(frame.stack[-n])


def _op_swap(frame, n):
    stack = frame.stack
    stack[-1], stack[-n] = stack[-n], stack[-1]


def _op_rot_n(frame, n):
    stack = frame.stack
    stack[-n:] = [stack[-1], *stack[-n:-1]]


def _op_dup_top(frame, arg):
    frame.stack.append(frame.stack[-1])


def _op_dup_top_two(frame, arg):
    frame.stack.extend(frame.stack[-2:])


def _op_end_for_312(frame, arg):
    del frame.stack[-2:]


def _op_end_send(frame, arg):
    del frame.stack[-2]


# -- constants and fast locals --------------------------------------------------------------------

def _op_load_const(frame, value):
    frame.stack.append(value)


def _unbound_local(frame, slot):
    return UnboundLocalError(_UNBOUND_LOCAL.format(frame.info.slot_names[slot]))


def _op_load_fast(frame, slot):
    value = frame.locals[slot]
    if value is _NULL:
        raise _unbound_local(frame, slot)
    frame.stack.append(value)


def _op_load_fast_and_clear(frame, slot):
    frame.stack.append(frame.locals[slot])
    frame.locals[slot] = _NULL


def _op_load_fast_load_fast(frame, slots):
    _op_load_fast(frame, slots[0])
    _op_load_fast(frame, slots[1])


def _op_store_fast(frame, slot):
    frame.locals[slot] = frame.stack.pop()


def _op_store_fast_load_fast(frame, slots):
    frame.locals[slots[0]] = frame.stack.pop()
    _op_load_fast(frame, slots[1])


def _op_store_fast_store_fast(frame, slots):
    frame.locals[slots[0]] = frame.stack.pop()
    frame.locals[slots[1]] = frame.stack.pop()


def _op_delete_fast(frame, slot):
    if frame.locals[slot] is _NULL:
        raise _unbound_local(frame, slot)
    frame.locals[slot] = _NULL


# -- cells ----------------------------------------------------------------------------------------

def _cell_get(cell):
    try:
        return cell.cell_contents
    except ValueError:
        return _NULL


def _unbound_deref(frame, slot):
    name = frame.info.slot_names[slot]
    if slot >= frame.info.nlocals - len(frame.code.co_freevars):
        return NameError(_UNBOUND_FREE.format(name), name=name)
    return UnboundLocalError(_UNBOUND_LOCAL.format(name))


def _op_make_cell(frame, slot):
    value = frame.locals[slot]
    frame.locals[slot] = _CellType() if value is _NULL else _CellType(value)


def _op_copy_free_vars(frame, n):
    frame.locals[-n:] = frame.func.__closure__


def _op_load_closure(frame, slot):
    frame.stack.append(frame.locals[slot])


def _load_deref(frame, slot):
    cell = frame.locals[slot]
    value = _cell_get(cell)
    if value is _NULL:
        raise _unbound_deref(frame, slot)
    on_load = frame.ctx.on_load
    if on_load is not None:
        value = on_load(value, Origin("cell", cell, frame.info.slot_names[slot]))
    return value


def _op_load_deref(frame, slot):
    frame.stack.append(_load_deref(frame, slot))


def _op_store_deref(frame, slot):
    frame.locals[slot].cell_contents = frame.stack.pop()


def _op_delete_deref(frame, slot):
    cell = frame.locals[slot]
    if _cell_get(cell) is _NULL:
        raise _unbound_deref(frame, slot)
    del cell.cell_contents


def _op_load_classderef(frame, slot):
    """3.10/3.11 class bodies: the class namespace first, then the cell."""
    value = _mapping_get(frame.locals_dict, frame.info.slot_names[slot])
    frame.stack.append(_load_deref(frame, slot) if value is _NULL else value)


def _op_load_from_dict_or_deref(frame, slot):
    mapping = frame.stack.pop()
    value = _mapping_get(mapping, frame.info.slot_names[slot])
    frame.stack.append(_load_deref(frame, slot) if value is _NULL else value)


# -- globals and names ----------------------------------------------------------------------------

def _mapping_get(mapping, key):
    if type(mapping) is dict:
        return mapping.get(key, _NULL)
    try:
        return mapping[key]
    except KeyError:
        return _NULL


def _load_global(frame, name):
    value = frame.globals.get(name, _NULL)
    if value is not _NULL:
        origin_kind, base = "global", frame.globals
    else:
        base = frame.builtins
        value = _mapping_get(base, name)
        if value is _NULL:
            raise NameError(f"name '{name}' is not defined", name=name)
        origin_kind = "builtin"
    on_load = frame.ctx.on_load
    if on_load is not None:
        value = on_load(value, Origin(origin_kind, base, name))
    return value


def _op_load_global(frame, name):
    frame.stack.append(_load_global(frame, name))


def _op_load_global_null_first(frame, arg):
    name, push_null = arg
    value = _load_global(frame, name)
    if push_null:
        frame.stack.append(_NULL)
    frame.stack.append(value)


def _op_load_global_null_after(frame, arg):
    name, push_null = arg
    frame.stack.append(_load_global(frame, name))
    if push_null:
        frame.stack.append(_NULL)


def _op_store_global(frame, name):
    frame.globals[name] = frame.stack.pop()


def _op_delete_global(frame, name):
    if name not in frame.globals:
        raise NameError(f"name '{name}' is not defined", name=name)
    del frame.globals[name]


def _class_namespace(frame, name):
    if frame.locals_dict is None:
        raise SystemError(f"no locals when accessing {name!r}")
    return frame.locals_dict


def _op_load_name(frame, name):
    value = _mapping_get(_class_namespace(frame, name), name)
    frame.stack.append(_load_global(frame, name) if value is _NULL else value)


def _op_store_name(frame, name):
    _class_namespace(frame, name)[name] = frame.stack.pop()


def _op_delete_name(frame, name):
    namespace = _class_namespace(frame, name)
    if _mapping_get(namespace, name) is _NULL:
        raise NameError(f"name '{name}' is not defined", name=name)
    del namespace[name]


def _op_load_locals(frame, arg):
    frame.stack.append(_class_namespace(frame, "__locals__"))


def _op_load_from_dict_or_globals(frame, name):
    value = _mapping_get(frame.stack.pop(), name)
    frame.stack.append(_load_global(frame, name) if value is _NULL else value)


def _op_load_build_class(frame, arg):
    build_class = _mapping_get(frame.builtins, "__build_class__")
    if build_class is _NULL:
        raise NameError("__build_class__ not found")
    frame.stack.append(build_class)


def _op_setup_annotations(frame, arg):
    namespace = _class_namespace(frame, "__annotations__")
    if _mapping_get(namespace, "__annotations__") is _NULL:
        namespace["__annotations__"] = {}


# -- attributes -----------------------------------------------------------------------------------

def _load_attr(frame, obj, name):
    try:
        value = getattr(obj, name)
    except AttributeError:
        value = frame.ctx.hooks.missing_attr(obj, name)
        if value is NotImplemented:
            raise
    on_load = frame.ctx.on_load
    if on_load is not None:
        value = on_load(value, Origin("attr", obj, name))
    return value


def _op_load_attr(frame, name):
    stack = frame.stack
    stack[-1] = _load_attr(frame, stack[-1], name)


def _op_load_method(frame, name):
    """Method loads push [NULL, bound method] (the attribute is read like any attribute, and
    calling the bound method interprets the function)."""
    stack = frame.stack
    value = _load_attr(frame, stack[-1], name)
    stack[-1] = _NULL
    stack.append(value)


def _op_load_attr_or_method_null_first(frame, arg):
    name, method = arg
    if method:
        _op_load_method(frame, name)
    else:
        _op_load_attr(frame, name)


def _op_load_attr_or_method_null_after(frame, arg):
    name, method = arg
    _op_load_attr(frame, name)
    if method:
        frame.stack.append(_NULL)


def _load_super_attr(frame, arg):
    name, method, two_args = arg
    stack = frame.stack
    obj = stack.pop()
    cls = stack.pop()
    global_super = stack.pop()
    # zero-argument super() has __class__ and the first argument on the stack already
    args = (cls, obj) if two_args or global_super is super else ()
    return _load_attr(frame, _call(frame.ctx, global_super, args, None), name), method


def _op_load_super_attr_null_first(frame, arg):
    value, method = _load_super_attr(frame, arg)
    if method:
        frame.stack.append(_NULL)
    frame.stack.append(value)


def _op_load_super_attr_null_after(frame, arg):
    value, method = _load_super_attr(frame, arg)
    frame.stack.append(value)
    if method:
        frame.stack.append(_NULL)


def _op_store_attr(frame, name):
    stack = frame.stack
    obj = stack.pop()
    frame.ctx.hooks.store_attr(obj, name, stack.pop())


def _op_delete_attr(frame, name):
    frame.ctx.hooks.delete_attr(frame.stack.pop(), name)


# -- operators ------------------------------------------------------------------------------------

_COMPARE_OPS = [operator.lt, operator.le, operator.eq, operator.ne, operator.gt, operator.ge]
_COMPARE_OPS_TO_BOOL = {op: (lambda a, b, op=op: bool(op(a, b))) for op in _COMPARE_OPS}
# BINARY_OP's argument (3.11+) indexes this list (dis._nb_ops).
_BINARY_OPS = [
    operator.add, operator.and_, operator.floordiv, operator.lshift, operator.matmul, operator.mul,
    operator.mod, operator.or_, operator.pow, operator.rshift, operator.sub, operator.truediv,
    operator.xor,
    operator.iadd, operator.iand, operator.ifloordiv, operator.ilshift, operator.imatmul, operator.imul,
    operator.imod, operator.ior, operator.ipow, operator.irshift, operator.isub, operator.itruediv,
    operator.ixor,
]
_CONVERSIONS = [None, str, repr, ascii]


def _op_binary(frame, fn):
    stack = frame.stack
    right = stack.pop()
    stack[-1] = fn(stack[-1], right)


def _op_unary(frame, fn):
    stack = frame.stack
    stack[-1] = fn(stack[-1])


def _op_unary_not(frame, arg):
    stack = frame.stack
    stack[-1] = not stack[-1]


def _op_to_bool(frame, arg):
    stack = frame.stack
    stack[-1] = bool(stack[-1])


def _op_is(frame, invert):
    stack = frame.stack
    right = stack.pop()
    stack[-1] = (stack[-1] is not right) if invert else (stack[-1] is right)


def _op_contains(frame, invert):
    stack = frame.stack
    container = stack.pop()
    result = stack[-1] in container
    stack[-1] = not result if invert else result


# -- subscripts and slices ------------------------------------------------------------------------

def _load_item(frame, container, key):
    value = container[key]
    on_load = frame.ctx.on_load
    if on_load is not None:
        value = on_load(value, Origin("item", container, key))
    return value


def _op_binary_subscr(frame, arg):
    stack = frame.stack
    key = stack.pop()
    stack[-1] = _load_item(frame, stack[-1], key)


def _op_store_subscr(frame, arg):
    stack = frame.stack
    key = stack.pop()
    container = stack.pop()
    frame.ctx.hooks.store_item(container, key, stack.pop())


def _op_delete_subscr(frame, arg):
    stack = frame.stack
    key = stack.pop()
    frame.ctx.hooks.delete_item(stack.pop(), key)


def _op_build_slice(frame, argc):
    stack = frame.stack
    args = stack[-argc:]
    del stack[-argc:]
    stack.append(slice(*args))


def _op_binary_slice(frame, arg):
    stack = frame.stack
    stop = stack.pop()
    start = stack.pop()
    stack[-1] = _load_item(frame, stack[-1], slice(start, stop))


def _op_store_slice(frame, arg):
    stack = frame.stack
    stop = stack.pop()
    start = stack.pop()
    container = stack.pop()
    container[start:stop] = stack.pop()


# -- building containers and strings --------------------------------------------------------------

def _pop_n(stack, n) -> list:
    if not n:
        return []
    items = stack[-n:]
    del stack[-n:]
    return items


def _op_build_tuple(frame, n):
    frame.stack.append(tuple(_pop_n(frame.stack, n)))


def _op_build_list(frame, n):
    frame.stack.append(_pop_n(frame.stack, n))


def _op_build_set(frame, n):
    frame.stack.append(set(_pop_n(frame.stack, n)))


def _op_build_map(frame, n):
    items = _pop_n(frame.stack, 2 * n)
    result = {}
    for i in range(0, 2 * n, 2):
        result[items[i]] = items[i + 1]
    frame.stack.append(result)


def _op_build_const_key_map(frame, n):
    keys = frame.stack.pop()
    frame.stack.append(dict(zip(keys, _pop_n(frame.stack, n))))


def _op_build_string(frame, n):
    frame.stack.append("".join(_pop_n(frame.stack, n)))


def _op_list_append(frame, i):
    value = frame.stack.pop()
    frame.stack[-i].append(value)


def _op_set_add(frame, i):
    value = frame.stack.pop()
    frame.stack[-i].add(value)


def _op_map_add(frame, i):
    stack = frame.stack
    value = stack.pop()
    key = stack.pop()
    stack[-i][key] = value


def _op_list_extend(frame, i):
    iterable = frame.stack.pop()
    if _not_iterable(iterable):
        raise TypeError(f"Value after * must be an iterable, not {type(iterable).__name__}")
    frame.stack[-i].extend(iterable)


def _op_set_update(frame, i):
    iterable = frame.stack.pop()
    frame.stack[-i].update(iterable)


def _op_list_to_tuple(frame, arg):
    frame.stack[-1] = tuple(frame.stack[-1])


def _op_dict_update(frame, i):
    update = frame.stack.pop()
    if type(update) is not dict and not hasattr(type(update), "keys"):
        raise TypeError(f"'{type(update).__name__}' object is not a mapping")
    target = frame.stack[-i]
    if type(update) is dict:
        target.update(update)
    else:
        for key in update.keys():
            target[key] = update[key]


def _op_dict_merge(frame, i):
    """``**mapping`` in a call: like DICT_UPDATE but a repeated keyword is an error."""
    stack = frame.stack
    update = stack.pop()
    target = stack[-i]
    if type(update) is not dict and not hasattr(type(update), "keys"):
        fn = stack[-i - _DICT_MERGE_FUNCTION_DEPTH]
        raise TypeError(f"{_function_str(fn)} argument after ** must be a mapping, not {type(update).__name__}")
    for key in update.keys():
        if key in target:
            fn = stack[-i - _DICT_MERGE_FUNCTION_DEPTH]
            raise TypeError(f"{_function_str(fn)} got multiple values for keyword argument '{key}'")
        target[key] = update[key]


def _op_format_value(frame, arg):
    convert, has_spec = arg
    stack = frame.stack
    spec = stack.pop() if has_spec else ""
    value = stack[-1]
    if convert is not None:
        value = convert(value)
    stack[-1] = format(value, spec)


def _op_convert_value(frame, convert):
    frame.stack[-1] = convert(frame.stack[-1])


def _op_format_simple(frame, arg):
    value = frame.stack[-1]
    if type(value) is not str:
        frame.stack[-1] = format(value, "")


def _op_format_with_spec(frame, arg):
    spec = frame.stack.pop()
    frame.stack[-1] = format(frame.stack[-1], spec)


# -- unpacking ------------------------------------------------------------------------------------

def _unpack_iterable(seq, before, after):
    """The items of ``seq`` for ``a, b = seq`` (after is None) or ``a, *b, c = seq`` (a list
    in the starred position), with CPython's errors."""
    if _not_iterable(seq):
        raise TypeError(f"cannot unpack non-iterable {type(seq).__name__} object")
    it = iter(seq)
    items = []
    for i in range(before):
        value = next(it, _NULL)
        if value is _NULL:
            if after is None:
                raise ValueError(f"not enough values to unpack (expected {before}, got {i})")
            raise ValueError(f"not enough values to unpack (expected at least {before + after}, got {i})")
        items.append(value)
    if after is None:
        if next(it, _NULL) is not _NULL:
            raise ValueError(f"too many values to unpack (expected {before})")
        return items
    rest = list(it)
    if len(rest) < after:
        raise ValueError(f"not enough values to unpack (expected at least {before + after}, "
                         f"got {before + len(rest)})")
    split = len(rest) - after
    items.append(rest[:split])
    items.extend(rest[split:])
    return items


def _op_unpack_sequence(frame, n):
    stack = frame.stack
    seq = stack.pop()
    t = type(seq)
    items = seq if (t is tuple or t is list) and len(seq) == n else _unpack_iterable(seq, n, None)
    on_load = frame.ctx.on_load
    if on_load is not None and not _is_interpreted_generator(seq):
        items = [on_load(item, Origin("unpack", seq, i)) for i, item in enumerate(items)]
    stack.extend(reversed(items))


def _op_unpack_ex(frame, arg):
    before, after = arg
    stack = frame.stack
    seq = stack.pop()
    items = _unpack_iterable(seq, before, after)
    on_load = frame.ctx.on_load
    if on_load is not None and not _is_interpreted_generator(seq):
        starred = items[before]
        items = [on_load(item, Origin("unpack", seq, i)) for i, item in enumerate(items[:before])] + [
            [on_load(item, Origin("unpack", seq, before + i)) for i, item in enumerate(starred)]] + [
            on_load(item, Origin("unpack", seq, before + len(starred) + i))
            for i, item in enumerate(items[before + 1:])]
    stack.extend(reversed(items))


# -- iteration and jumps --------------------------------------------------------------------------

def _op_get_iter(frame, arg):
    frame.stack[-1] = iter(frame.stack[-1])


def _next_item(frame, it):
    value = next(it, _NULL)
    if value is not _NULL:
        on_load = frame.ctx.on_load
        if on_load is not None and not _is_interpreted_generator(it):
            value = on_load(value, Origin("iter", it, None))
    return value


def _op_for_iter_pop(frame, target):
    """3.10/3.11: an exhausted iterator is popped and the loop jumps to its end."""
    stack = frame.stack
    value = _next_item(frame, stack[-1])
    if value is _NULL:
        stack.pop()
        frame.ip = target
    else:
        stack.append(value)


def _op_for_iter_to_end_for(frame, target):
    """3.12+: an exhausted loop jumps to END_FOR, which pops the iterator and one more value."""
    stack = frame.stack
    value = _next_item(frame, stack[-1])
    if value is _NULL:
        frame.ip = target
    stack.append(value)


def _op_jump(frame, target):
    frame.ip = target


def _op_pop_jump_if_false(frame, target):
    if not frame.stack.pop():
        frame.ip = target


def _op_pop_jump_if_true(frame, target):
    if frame.stack.pop():
        frame.ip = target


def _op_pop_jump_if_none(frame, target):
    if frame.stack.pop() is None:
        frame.ip = target


def _op_pop_jump_if_not_none(frame, target):
    if frame.stack.pop() is not None:
        frame.ip = target


def _op_jump_if_false_or_pop(frame, target):
    if not frame.stack[-1]:
        frame.ip = target
    else:
        frame.stack.pop()


def _op_jump_if_true_or_pop(frame, target):
    if frame.stack[-1]:
        frame.ip = target
    else:
        frame.stack.pop()


# -- calls and functions --------------------------------------------------------------------------

def _op_call_function(frame, argc):
    """3.10: [callable, args...]."""
    stack = frame.stack
    args = _pop_n(stack, argc)
    fn = stack.pop()
    stack.append(_call(frame.ctx, fn, args, None))


def _op_call_function_kw(frame, argc):
    """3.10: [callable, args..., kwnames]."""
    stack = frame.stack
    names = stack.pop()
    args = _pop_n(stack, argc)
    fn = stack.pop()
    split = argc - len(names)
    stack.append(_call(frame.ctx, fn, args[:split], dict(zip(names, args[split:]))))


def _op_call_method(frame, argc):
    """3.10: [NULL, callable, args...] or [method, self, args...]."""
    stack = frame.stack
    items = _pop_n(stack, argc + 2)
    if items[0] is _NULL:
        stack.append(_call(frame.ctx, items[1], items[2:], None))
    else:
        stack.append(_call(frame.ctx, items[0], items[1:], None))


def _split_kwargs(args, names):
    if not names:
        return args, None
    split = len(args) - len(names)
    return args[:split], dict(zip(names, args[split:]))


def _op_call_null_first(frame, argc):
    """3.11/3.12: [NULL, callable, args...] or [method, self, args...]; KW_NAMES names the last
    arguments."""
    stack = frame.stack
    items = _pop_n(stack, argc + 2)
    names = frame.kw_names
    frame.kw_names = None
    if items[0] is _NULL:
        fn, args = items[1], items[2:]
    else:
        fn, args = items[0], items[1:]
    args, kwargs = _split_kwargs(args, names)
    stack.append(_call(frame.ctx, fn, args, kwargs))


def _call_callable_first(frame, argc, names):
    stack = frame.stack
    items = _pop_n(stack, argc + 2)
    args = items[2:] if items[1] is _NULL else items[1:]
    args, kwargs = _split_kwargs(args, names)
    stack.append(_call(frame.ctx, items[0], args, kwargs))


def _op_call_callable_first(frame, argc):
    """3.13: [callable, NULL, args...] or [method, self, args...]."""
    _call_callable_first(frame, argc, None)


def _op_call_kw(frame, argc):
    """3.13: like CALL with a tuple of keyword names on top."""
    _call_callable_first(frame, argc, frame.stack.pop())


def _op_kw_names(frame, names):
    frame.kw_names = names


def _op_call_function_ex_310(frame, flags):
    stack = frame.stack
    kwargs = stack.pop() if flags & 1 else None
    args = stack.pop()
    fn = stack.pop()
    stack.append(_call_with_star_args(frame, fn, args, kwargs))


def _op_call_function_ex_null_first(frame, flags):
    stack = frame.stack
    kwargs = stack.pop() if flags & 1 else None
    args = stack.pop()
    fn = stack.pop()
    stack.pop()
    stack.append(_call_with_star_args(frame, fn, args, kwargs))


def _op_call_function_ex_null_after(frame, flags):
    stack = frame.stack
    kwargs = stack.pop() if flags & 1 else None
    args = stack.pop()
    stack.pop()
    fn = stack.pop()
    stack.append(_call_with_star_args(frame, fn, args, kwargs))


def _annotations_dict(annotations):
    """MAKE_FUNCTION passes annotations as a flat (name, value, ...) tuple."""
    if type(annotations) is tuple:
        return dict(zip(annotations[::2], annotations[1::2]))
    return annotations


def _make_function(frame, flags, code, qualname=None):
    stack = frame.stack
    closure = stack.pop() if flags & 8 else None
    annotations = stack.pop() if flags & 4 else None
    kwdefaults = stack.pop() if flags & 2 else None
    defaults = stack.pop() if flags & 1 else None
    fn = _FunctionType(code, frame.globals, code.co_name, defaults, closure)
    if qualname is not None:
        fn.__qualname__ = qualname
    if kwdefaults is not None:
        fn.__kwdefaults__ = kwdefaults
    if annotations is not None:
        fn.__annotations__ = _annotations_dict(annotations)
    stack.append(fn)


def _op_make_function_310(frame, flags):
    """3.10: [defaults?, kwdefaults?, annotations?, closure?, code, qualname]."""
    qualname = frame.stack.pop()
    _make_function(frame, flags, frame.stack.pop(), qualname)


def _op_make_function_311(frame, flags):
    """3.11/3.12: [defaults?, kwdefaults?, annotations?, closure?, code]."""
    _make_function(frame, flags, frame.stack.pop())


def _op_make_function_313(frame, arg):
    """3.13: only the code; SET_FUNCTION_ATTRIBUTE adds the rest.  A function needing a closure
    gets empty cells until SET_FUNCTION_ATTRIBUTE 8 replaces it."""
    code = frame.stack.pop()
    closure = tuple(_CellType() for _ in code.co_freevars) or None
    frame.stack.append(_FunctionType(code, frame.globals, code.co_name, None, closure))


def _op_set_function_attribute(frame, flag):
    stack = frame.stack
    fn = stack.pop()
    value = stack.pop()
    if flag == 8:
        # a closure cannot be assigned; the compiler sets it first, so nothing else is lost
        qualname = fn.__qualname__
        fn = _FunctionType(fn.__code__, fn.__globals__, fn.__name__, None, value)
        fn.__qualname__ = qualname
    elif flag == 4:
        fn.__annotations__ = _annotations_dict(value)
    elif flag == 2:
        fn.__kwdefaults__ = value
    else:
        fn.__defaults__ = value
    stack.append(fn)


def _op_return_value(frame, arg):
    frame.result = frame.stack.pop()
    frame.yielding = False
    return True


def _op_return_const(frame, value):
    frame.result = value
    frame.yielding = False
    return True


# -- exceptions -----------------------------------------------------------------------------------

def _op_raise_varargs(frame, argc):
    stack = frame.stack
    if argc == 0:
        exc = _handled_exception()
        if exc is None:
            raise RuntimeError("No active exception to reraise")
        raise exc
    cause = stack.pop() if argc == 2 else _NULL
    exc = _make_exception(stack.pop(), "exceptions must derive from BaseException")
    if cause is not _NULL:
        exc.__cause__ = None if cause is None else _make_exception(
            cause, "exception causes must derive from BaseException")
    _chain_context(exc, _handled_exception())
    raise exc


def _op_load_assertion_error(frame, arg):
    frame.stack.append(AssertionError)


def _op_push_exc_info(frame, arg):
    """3.11+: [exc] -> [previously handled, exc]; exc becomes the handled exception."""
    stack = frame.stack
    exc = stack[-1]
    chain = _state.exc_chain
    stack[-1] = chain[-1]
    stack.append(exc)
    chain[-1] = exc


def _op_pop_except(frame, arg):
    """3.11+: restores the handled exception saved by PUSH_EXC_INFO."""
    _state.exc_chain[-1] = frame.stack.pop()


def _op_check_exc_match(frame, arg):
    stack = frame.stack
    spec = stack.pop()
    _check_except_type(spec)
    stack.append(_exception_matches(type(stack[-1]), spec))


def _op_reraise(frame, arg):
    """3.11+: re-raises the exception on top (RERAISE's argument only restores f_lasti)."""
    raise frame.stack.pop()


def _op_setup_finally(frame, target):
    frame.blocks.append((_SETUP_FINALLY, target, len(frame.stack)))


def _op_pop_block(frame, arg):
    frame.blocks.pop()


def _op_pop_except_310(frame, arg):
    """3.10: pops the EXCEPT_HANDLER block and restores the handled exception from the stack."""
    frame.blocks.pop()
    stack = frame.stack
    stack.pop()
    _state.exc_chain[-1] = stack.pop()
    stack.pop()


def _op_reraise_310(frame, arg):
    stack = frame.stack
    stack.pop()
    exc = stack.pop()
    stack.pop()
    raise exc


def _op_jump_if_not_exc_match(frame, target):
    stack = frame.stack
    spec = stack.pop()
    exc_type = stack.pop()
    _check_except_type(spec)
    if not _exception_matches(exc_type, spec):
        frame.ip = target


# except* (exception groups)

def _check_except_star_type(spec) -> None:
    _check_except_type(spec)
    for s in (spec if type(spec) is tuple else (spec,)):
        if issubclass(s, _BaseExceptionGroup):
            raise TypeError("catching ExceptionGroup with except* is not allowed. Use except instead.")


def _exception_group_match(exc, spec):
    """(match, rest) of ``except* spec`` for ``exc`` (rest is exc itself when nothing matches)."""
    if exc is None:
        return None, None
    if _exception_matches(type(exc), spec):
        if isinstance(exc, _BaseExceptionGroup):
            return exc, None
        wrapped = (_ExceptionGroup if isinstance(exc, Exception) else _BaseExceptionGroup)("", [exc])
        wrapped.__traceback__ = exc.__traceback__
        return wrapped, None
    if isinstance(exc, _BaseExceptionGroup):
        match, rest = exc.split(spec)
        if match is not None:
            return match, rest
    return None, exc


def _op_check_eg_match(frame, arg):
    """[exc, type] -> [rest, match]; a match becomes the handled exception."""
    stack = frame.stack
    spec = stack.pop()
    _check_except_star_type(spec)
    match, rest = _exception_group_match(stack[-1], spec)
    stack[-1] = rest
    stack.append(match)
    if match is not None:
        _state.exc_chain[-1] = match


def _leaf_ids(exc, into: set) -> set:
    if isinstance(exc, _BaseExceptionGroup):
        for e in exc.exceptions:
            _leaf_ids(e, into)
    else:
        into.add(id(exc))
    return into


def _same_exception_metadata(a, b) -> bool:
    return (getattr(a, "__notes__", None) is getattr(b, "__notes__", None)
            and a.__traceback__ is b.__traceback__ and a.__cause__ is b.__cause__
            and a.__context__ is b.__context__)


def _prep_reraise_star(original, raised):
    """What leaves a try/except* statement: the exceptions raised by its clauses plus the part of
    the original group its clauses re-raised (CPython's _PyExc_PrepReraiseStar)."""
    raised = [e for e in raised if e is not None]
    if not raised:
        return None
    if not isinstance(original, _BaseExceptionGroup):
        return raised[0]
    new = [e for e in raised if not _same_exception_metadata(e, original)]
    keep = set()
    for e in raised:
        if _same_exception_metadata(e, original):
            _leaf_ids(e, keep)
    reraised = original.split(lambda e: id(e) in keep)[0] if keep else None
    if reraised is not None:
        new.append(reraised)
    if not new:
        return None
    return new[0] if len(new) == 1 else _ExceptionGroup("", new)


def _op_prep_reraise_star(frame, arg):
    raised = frame.stack.pop()
    frame.stack[-1] = _prep_reraise_star(frame.stack[-1], raised)


# -- with -----------------------------------------------------------------------------------------

def _enter_context(frame, mgr, enter_name, exit_name, is_async):
    """Pushes the bound exit method and returns the result of calling the enter method."""
    enter = _lookup_special(type(mgr), enter_name)
    if enter is _NULL:
        raise _missing_context_manager_method(mgr, enter_name, is_async)
    exit_ = _lookup_special(type(mgr), exit_name)
    if exit_ is _NULL:
        raise _missing_context_manager_method(mgr, exit_name, is_async)
    frame.stack.append(_bind(exit_, mgr))
    return _call(frame.ctx, _bind(enter, mgr), (), None)


def _op_before_with(frame, arg):
    """3.11+: [mgr] -> [bound __exit__, result of __enter__()]."""
    frame.stack.append(_enter_context(frame, frame.stack.pop(), "__enter__", "__exit__", False))


def _op_before_async_with(frame, arg):
    frame.stack.append(_enter_context(frame, frame.stack.pop(), "__aenter__", "__aexit__", True))


def _op_setup_with_310(frame, target):
    """3.10: like BEFORE_WITH, plus a SETUP_FINALLY block for the with body."""
    stack = frame.stack
    result = _enter_context(frame, stack.pop(), "__enter__", "__exit__", False)
    frame.blocks.append((_SETUP_FINALLY, target, len(stack)))
    stack.append(result)


def _op_setup_async_with_310(frame, target):
    stack = frame.stack
    result = stack.pop()
    frame.blocks.append((_SETUP_FINALLY, target, len(stack)))
    stack.append(result)


def _op_with_except_start(frame, arg):
    """3.11+: [exit, lasti, previous exc, exc] -> [..., exit(type, exc, traceback)]."""
    stack = frame.stack
    exc = stack[-1]
    stack.append(_call(frame.ctx, stack[-4], (type(exc), exc, exc.__traceback__), None))


def _op_with_except_start_310(frame, arg):
    """3.10: [exit, 3 previous exc values, traceback, exc, type] -> [..., exit(type, exc, tb)]."""
    stack = frame.stack
    stack.append(_call(frame.ctx, stack[-7], (stack[-1], stack[-2], stack[-3]), None))


# -- generators and coroutines --------------------------------------------------------------------

def _op_return_generator(frame, arg):
    """3.11+: the generator object was made by the call; on first resume the sent None is pushed
    (the next instruction pops it)."""
    frame.stack.append(None)


def _op_yield_value(frame, send_index):
    frame.result = frame.stack.pop()
    frame.yielding = True
    frame.delegate_ip = send_index
    return True


def _op_yield_value_310(frame, arg):
    """3.10: YIELD_VALUE also marks the values an async generator yields."""
    value = frame.stack.pop()
    if frame.code.co_flags & _CO_ASYNC_GENERATOR:
        value = _AsyncGenValue(value)
    frame.result = value
    frame.yielding = True
    frame.delegate_ip = None
    return True


def _op_yield_from_310(frame, arg):
    """3.10: [iter, value] -> send value into iter; when it yields, yield that and run this
    instruction again on resume; when it returns, replace iter by its return value."""
    stack = frame.stack
    value = stack.pop()
    done, result = _send(frame, stack[-1], value)
    if done:
        stack[-1] = result
        return None
    frame.ip -= 1
    frame.delegate_ip = frame.ip
    frame.result = result
    frame.yielding = True
    return True


def _op_send_311(frame, target):
    """3.11: [iter, value] -> [iter, yielded] or, when iter returns, [returned] and jump."""
    stack = frame.stack
    value = stack.pop()
    done, result = _send(frame, stack[-1], value)
    if done:
        stack[-1] = result
        frame.ip = target
    else:
        stack.append(result)


def _op_send_312(frame, target):
    """3.12+: [iter, value] -> [iter, yielded] or, when iter returns, [iter, returned] and jump
    (to END_SEND)."""
    stack = frame.stack
    value = stack.pop()
    done, result = _send(frame, stack[-1], value)
    stack.append(result)
    if done:
        frame.ip = target


def _op_cleanup_throw(frame, arg):
    """3.12+: [iter, last sent, exc]: a StopIteration thrown out of iter ends the delegation."""
    stack = frame.stack
    exc = stack[-1]
    if not isinstance(exc, StopIteration):
        raise exc
    del stack[-3:]
    stack.append(exc.value)


def _op_get_yield_from_iter(frame, arg):
    value = frame.stack[-1]
    if type(value) is _CoroutineType:
        if not frame.code.co_flags & (_CO_COROUTINE | _CO_ITERABLE_COROUTINE):
            raise TypeError("cannot 'yield from' a coroutine object in a non-coroutine generator")
    elif type(value) is not _GeneratorType:
        frame.stack[-1] = iter(value)


def _op_get_awaitable(frame, arg):
    frame.stack[-1] = _get_awaitable_iter(frame.stack[-1])


def _op_async_gen_wrap(frame, arg):
    frame.stack[-1] = _AsyncGenValue(frame.stack[-1])


def _op_get_aiter(frame, arg):
    obj = frame.stack[-1]
    aiter = _lookup_special(type(obj), "__aiter__")
    if aiter is _NULL:
        raise TypeError(f"'async for' requires an object with __aiter__ method, got {type(obj).__name__}")
    it = _call(frame.ctx, _bind(aiter, obj), (), None)
    if _lookup_special(type(it), "__anext__") is _NULL:
        raise TypeError("'async for' received an object from __aiter__ that does not implement "
                        f"__anext__: {type(it).__name__}")
    frame.stack[-1] = it


def _op_get_anext(frame, arg):
    it = frame.stack[-1]
    if type(it) is _InterpretedAsyncGenerator:
        awaitable = it.__anext__()
    else:
        anext = _lookup_special(type(it), "__anext__")
        if anext is _NULL:
            raise TypeError(f"'async for' requires an iterator with __anext__ method, got {type(it).__name__}")
        awaitable = _call(frame.ctx, _bind(anext, it), (), None)
    frame.stack.append(_get_awaitable_iter(awaitable))


def _op_end_async_for(frame, arg):
    """3.11+: [aiter, exc]: StopAsyncIteration ends the loop, anything else propagates."""
    stack = frame.stack
    exc = stack.pop()
    if not isinstance(exc, StopAsyncIteration):
        raise exc
    stack.pop()


def _op_end_async_for_310(frame, arg):
    stack = frame.stack
    exc_type = stack.pop()
    if not _exception_matches(exc_type, StopAsyncIteration):
        exc = stack.pop()
        stack.pop()
        raise exc
    _, _, level = frame.blocks.pop()
    del stack[level + 3:]
    stack.pop()
    _state.exc_chain[-1] = stack.pop()
    stack.pop()
    stack.pop()


# -- pattern matching -----------------------------------------------------------------------------

def _op_get_len(frame, arg):
    frame.stack.append(len(frame.stack[-1]))


def _op_match_mapping(frame, arg):
    frame.stack.append(bool(type(frame.stack[-1]).__flags__ & _TPFLAGS_MAPPING))


def _op_match_sequence(frame, arg):
    frame.stack.append(bool(type(frame.stack[-1]).__flags__ & _TPFLAGS_SEQUENCE))


def _match_keys(subject, keys):
    """The values of ``keys`` in the mapping ``subject``, or None if one is missing."""
    if not keys:
        return ()
    get = subject.get
    missing = object()
    seen = set()
    values = []
    for key in keys:
        if key in seen:
            raise ValueError(f"mapping pattern checks duplicate key ({key!r})")
        seen.add(key)
        value = get(key, missing)
        if value is missing:
            return None
        values.append(value)
    return tuple(values)


def _op_match_keys(frame, arg):
    """3.11+: [subject, keys] -> [subject, keys, values or None]."""
    frame.stack.append(_match_keys(frame.stack[-2], frame.stack[-1]))


def _op_match_keys_310(frame, arg):
    """3.10: also pushes whether it matched."""
    values = _match_keys(frame.stack[-2], frame.stack[-1])
    frame.stack.extend((values, values is not None))


def _match_class(subject, cls, npositional, names):
    """The attributes a class pattern ``cls(<npositional>, name=...)`` extracts from ``subject``,
    or None if it does not match (CPython's match_class)."""
    if not isinstance(cls, type):
        raise TypeError(f"called match pattern must be a {'type' if _PY < (3, 11) else 'class'}")
    if not isinstance(subject, cls):
        return None
    seen = set()
    attributes = []

    def attribute(name):
        if name in seen:
            raise TypeError(f"{cls.__name__}() got multiple sub-patterns for attribute {name!r}")
        seen.add(name)
        return getattr(subject, name, _NULL)

    if npositional:
        match_args = getattr(cls, "__match_args__", _NULL)
        match_self = False
        if match_args is _NULL:
            match_self = bool(cls.__flags__ & _TPFLAGS_MATCH_SELF)
            match_args = ()
        elif type(match_args) is not tuple:
            raise TypeError(f"{cls.__name__}.__match_args__ must be a tuple (got {type(match_args).__name__})")
        allowed = 1 if match_self else len(match_args)
        if allowed < npositional:
            raise TypeError(f"{cls.__name__}() accepts {allowed} positional sub-pattern"
                            f"{'' if allowed == 1 else 's'} ({npositional} given)")
        if match_self:
            attributes.append(subject)
        else:
            for name in match_args[:npositional]:
                if type(name) is not str:
                    raise TypeError(f"__match_args__ elements must be strings (got {type(name).__name__})")
                value = attribute(name)
                if value is _NULL:
                    return None
                attributes.append(value)
    for name in names:
        value = attribute(name)
        if value is _NULL:
            return None
        attributes.append(value)
    return tuple(attributes)


def _op_match_class(frame, npositional):
    """3.11+: [subject, cls, names] -> [attributes or None]."""
    stack = frame.stack
    names = stack.pop()
    cls = stack.pop()
    stack[-1] = _match_class(stack[-1], cls, npositional, names)


def _op_match_class_310(frame, npositional):
    """3.10: [subject, cls, names] -> [attributes or subject, matched]."""
    stack = frame.stack
    names = stack.pop()
    attributes = _match_class(stack[-2], stack[-1], npositional, names)
    if attributes is not None:
        stack[-2] = attributes
    stack[-1] = attributes is not None


def _op_copy_dict_without_keys(frame, arg):
    """3.10/3.11: [subject, keys] -> [subject, dict of subject without keys]."""
    stack = frame.stack
    rest = {}
    rest.update(stack[-2])
    for key in stack[-1]:
        del rest[key]
    stack[-1] = rest


# -- imports --------------------------------------------------------------------------------------

def _op_import_name(frame, name):
    stack = frame.stack
    fromlist = stack.pop()
    level = stack.pop()
    import_ = _mapping_get(frame.builtins, "__import__")
    if import_ is _NULL:
        raise ImportError("__import__ not found")
    module = import_(name, frame.globals, frame.locals_dict, fromlist, level)
    on_load = frame.ctx.on_load
    if on_load is not None:
        module = on_load(module, Origin("call", import_, None))
    stack.append(module)


def _op_import_from(frame, name):
    module = frame.stack[-1]
    value = getattr(module, name, _NULL)
    if value is _NULL:
        package = getattr(module, "__name__", None)
        value = sys.modules.get(f"{package}.{name}", _NULL) if isinstance(package, str) else _NULL
        if value is _NULL:
            location = getattr(module, "__file__", None) or "unknown location"
            raise ImportError(f"cannot import name {name!r} from {package!r} ({location})",
                              name=package, path=getattr(module, "__file__", None))
    on_load = frame.ctx.on_load
    if on_load is not None:
        value = on_load(value, Origin("attr", module, name))
    frame.stack.append(value)


def _import_star(frame, module):
    namespace = _class_namespace(frame, "*")
    names = getattr(module, "__all__", _NULL)
    if names is _NULL:
        names = [n for n in module.__dict__ if not n.startswith("_")]
    for name in names:
        namespace[name] = getattr(module, name)


def _op_import_star(frame, arg):
    _import_star(frame, frame.stack.pop())


# -- misc -----------------------------------------------------------------------------------------

def _op_print_expr(frame, arg):
    sys.displayhook(frame.stack.pop())


# -- intrinsics (3.12+) ---------------------------------------------------------------------------

def _op_call_intrinsic_1(frame, fn):
    frame.stack[-1] = fn(frame, frame.stack[-1])


def _op_call_intrinsic_2(frame, fn):
    second = frame.stack.pop()
    frame.stack[-1] = fn(frame, frame.stack[-1], second)


def _intrinsic_import_star(frame, module):
    _import_star(frame, module)
    return None


def _intrinsic_stopiteration_error(frame, exc):
    """Generators must not leak StopIteration (PEP 479)."""
    flags = frame.code.co_flags
    kind = "coroutine" if flags & _CO_COROUTINE else "async generator" if flags & _CO_ASYNC_GENERATOR else "generator"
    if isinstance(exc, StopIteration):
        message = f"{kind} raised StopIteration"
    elif flags & _CO_ASYNC_GENERATOR and isinstance(exc, StopAsyncIteration):
        message = "async generator raised StopAsyncIteration"
    else:
        return exc
    error = RuntimeError(message)
    error.__cause__ = exc
    error.__context__ = exc
    return error


def _intrinsic_subscript_generic(frame, params):
    import typing
    return typing.Generic[tuple(typing.Unpack[p] if isinstance(p, typing.TypeVarTuple) else p for p in params)]


def _intrinsic_type_param(name, **options):
    """A PEP 695 type parameter (their variance is inferred)."""
    def intrinsic(frame, value):
        import typing
        return getattr(typing, name)(value, **options)
    return intrinsic


def _intrinsic_set_function_type_params(frame, fn, params):
    fn.__type_params__ = params
    return fn


# PEP 695 bounds, constraints and alias values are evaluated lazily by CPython; there is no
# public way to build them lazily, so these evaluate them when the definition runs.

def _intrinsic_typevar_with_bound(frame, name, evaluate_bound):
    import typing
    return typing.TypeVar(name, bound=_call(frame.ctx, evaluate_bound, (), None), infer_variance=True)


def _intrinsic_typevar_with_constraints(frame, name, evaluate_constraints):
    import typing
    return typing.TypeVar(name, *_call(frame.ctx, evaluate_constraints, (), None), infer_variance=True)


def _intrinsic_typealias(frame, args):
    import typing
    name, type_params, compute_value = args
    return typing.TypeAliasType(name, _call(frame.ctx, compute_value, (), None), type_params=type_params or ())


_INTRINSICS_1 = {
    1: lambda frame, value: sys.displayhook(value),
    2: _intrinsic_import_star,
    3: _intrinsic_stopiteration_error,
    4: lambda frame, value: _AsyncGenValue(value),
    5: lambda frame, value: +value,
    6: lambda frame, value: tuple(value),
    7: _intrinsic_type_param("TypeVar", infer_variance=True),
    8: _intrinsic_type_param("ParamSpec", infer_variance=True),
    9: _intrinsic_type_param("TypeVarTuple"),
    10: _intrinsic_subscript_generic,
    11: _intrinsic_typealias,
}
_INTRINSICS_2 = {
    1: lambda frame, original, raised: _prep_reraise_star(original, raised),
    2: _intrinsic_typevar_with_bound,
    3: _intrinsic_typevar_with_constraints,
    4: _intrinsic_set_function_type_params,
}


# =================================================================================================
# Opcode tables: opname -> (handler, argument preparer) for each Python version
# =================================================================================================

_COMMON = {
    "NOP": (_op_nop, None),
    "EXTENDED_ARG": (_op_nop, None),
    "POP_TOP": (_op_pop_top, None),
    "LOAD_CONST": (_op_load_const, _const),
    "LOAD_FAST": (_op_load_fast, _arg),
    "STORE_FAST": (_op_store_fast, _arg),
    "DELETE_FAST": (_op_delete_fast, _arg),
    "LOAD_CLOSURE": (_op_load_closure, _deref),
    "LOAD_DEREF": (_op_load_deref, _deref),
    "STORE_DEREF": (_op_store_deref, _deref),
    "DELETE_DEREF": (_op_delete_deref, _deref),
    "STORE_GLOBAL": (_op_store_global, _argval),
    "DELETE_GLOBAL": (_op_delete_global, _argval),
    "LOAD_NAME": (_op_load_name, _argval),
    "STORE_NAME": (_op_store_name, _argval),
    "DELETE_NAME": (_op_delete_name, _argval),
    "LOAD_BUILD_CLASS": (_op_load_build_class, None),
    "SETUP_ANNOTATIONS": (_op_setup_annotations, None),
    "STORE_ATTR": (_op_store_attr, _argval),
    "DELETE_ATTR": (_op_delete_attr, _argval),
    "UNARY_NEGATIVE": (_op_unary, _fixed(operator.neg)),
    "UNARY_INVERT": (_op_unary, _fixed(operator.invert)),
    "UNARY_NOT": (_op_unary_not, None),
    "COMPARE_OP": (_op_binary, _compare),
    "IS_OP": (_op_is, _arg),
    "CONTAINS_OP": (_op_contains, _arg),
    "BINARY_SUBSCR": (_op_binary_subscr, None),
    "STORE_SUBSCR": (_op_store_subscr, None),
    "DELETE_SUBSCR": (_op_delete_subscr, None),
    "BUILD_SLICE": (_op_build_slice, _arg),
    "BUILD_TUPLE": (_op_build_tuple, _arg),
    "BUILD_LIST": (_op_build_list, _arg),
    "BUILD_SET": (_op_build_set, _arg),
    "BUILD_MAP": (_op_build_map, _arg),
    "BUILD_CONST_KEY_MAP": (_op_build_const_key_map, _arg),
    "BUILD_STRING": (_op_build_string, _arg),
    "LIST_APPEND": (_op_list_append, _arg),
    "SET_ADD": (_op_set_add, _arg),
    "MAP_ADD": (_op_map_add, _arg),
    "LIST_EXTEND": (_op_list_extend, _arg),
    "SET_UPDATE": (_op_set_update, _arg),
    "DICT_UPDATE": (_op_dict_update, _arg),
    "DICT_MERGE": (_op_dict_merge, _arg),
    "UNPACK_SEQUENCE": (_op_unpack_sequence, _arg),
    "UNPACK_EX": (_op_unpack_ex, _unpack_ex),
    "GET_ITER": (_op_get_iter, None),
    "JUMP_FORWARD": (_op_jump, _jump),
    "RETURN_VALUE": (_op_return_value, None),
    "RAISE_VARARGS": (_op_raise_varargs, _arg),
    "LOAD_ASSERTION_ERROR": (_op_load_assertion_error, None),
    "GET_YIELD_FROM_ITER": (_op_get_yield_from_iter, None),
    "GET_AWAITABLE": (_op_get_awaitable, None),
    "GET_AITER": (_op_get_aiter, None),
    "GET_ANEXT": (_op_get_anext, None),
    "BEFORE_ASYNC_WITH": (_op_before_async_with, None),
    "GET_LEN": (_op_get_len, None),
    "MATCH_MAPPING": (_op_match_mapping, None),
    "MATCH_SEQUENCE": (_op_match_sequence, None),
    "IMPORT_NAME": (_op_import_name, _argval),
    "IMPORT_FROM": (_op_import_from, _argval),
}

_OPS_310 = {
    # stack
    "ROT_TWO": (_op_rot_n, _fixed(2)),
    "ROT_THREE": (_op_rot_n, _fixed(3)),
    "ROT_FOUR": (_op_rot_n, _fixed(4)),
    "ROT_N": (_op_rot_n, _arg),
    "DUP_TOP": (_op_dup_top, None),
    "DUP_TOP_TWO": (_op_dup_top_two, None),
    # names and attributes
    "LOAD_GLOBAL": (_op_load_global, _argval),
    "LOAD_ATTR": (_op_load_attr, _argval),
    "LOAD_METHOD": (_op_load_method, _argval),
    "LOAD_CLASSDEREF": (_op_load_classderef, _deref),
    # operators
    "UNARY_POSITIVE": (_op_unary, _fixed(operator.pos)),
    **{f"BINARY_{name}": (_op_binary, _fixed(fn)) for name, fn in [
        ("ADD", operator.add), ("AND", operator.and_), ("FLOOR_DIVIDE", operator.floordiv),
        ("LSHIFT", operator.lshift), ("MATRIX_MULTIPLY", operator.matmul), ("MULTIPLY", operator.mul),
        ("MODULO", operator.mod), ("OR", operator.or_), ("POWER", operator.pow),
        ("RSHIFT", operator.rshift), ("SUBTRACT", operator.sub), ("TRUE_DIVIDE", operator.truediv),
        ("XOR", operator.xor)]},
    **{f"INPLACE_{name}": (_op_binary, _fixed(fn)) for name, fn in [
        ("ADD", operator.iadd), ("AND", operator.iand), ("FLOOR_DIVIDE", operator.ifloordiv),
        ("LSHIFT", operator.ilshift), ("MATRIX_MULTIPLY", operator.imatmul), ("MULTIPLY", operator.imul),
        ("MODULO", operator.imod), ("OR", operator.ior), ("POWER", operator.ipow),
        ("RSHIFT", operator.irshift), ("SUBTRACT", operator.isub), ("TRUE_DIVIDE", operator.itruediv),
        ("XOR", operator.ixor)]},
    # containers and formatting
    "LIST_TO_TUPLE": (_op_list_to_tuple, None),
    "FORMAT_VALUE": (_op_format_value, _format_value),
    # control flow
    "JUMP_ABSOLUTE": (_op_jump, _jump),
    "POP_JUMP_IF_FALSE": (_op_pop_jump_if_false, _jump),
    "POP_JUMP_IF_TRUE": (_op_pop_jump_if_true, _jump),
    "JUMP_IF_FALSE_OR_POP": (_op_jump_if_false_or_pop, _jump),
    "JUMP_IF_TRUE_OR_POP": (_op_jump_if_true_or_pop, _jump),
    "FOR_ITER": (_op_for_iter_pop, _jump),
    # calls and functions
    "CALL_FUNCTION": (_op_call_function, _arg),
    "CALL_FUNCTION_KW": (_op_call_function_kw, _arg),
    "CALL_METHOD": (_op_call_method, _arg),
    "CALL_FUNCTION_EX": (_op_call_function_ex_310, _arg),
    "MAKE_FUNCTION": (_op_make_function_310, _arg),
    # exceptions and with (block stack)
    "SETUP_FINALLY": (_op_setup_finally, _jump),
    "POP_BLOCK": (_op_pop_block, None),
    "POP_EXCEPT": (_op_pop_except_310, None),
    "RERAISE": (_op_reraise_310, _arg),
    "JUMP_IF_NOT_EXC_MATCH": (_op_jump_if_not_exc_match, _jump),
    "SETUP_WITH": (_op_setup_with_310, _jump),
    "SETUP_ASYNC_WITH": (_op_setup_async_with_310, _jump),
    "WITH_EXCEPT_START": (_op_with_except_start_310, None),
    # generators and coroutines
    "GEN_START": (_op_nop, None),
    "YIELD_VALUE": (_op_yield_value_310, None),
    "YIELD_FROM": (_op_yield_from_310, None),
    "END_ASYNC_FOR": (_op_end_async_for_310, None),
    # pattern matching
    "MATCH_KEYS": (_op_match_keys_310, None),
    "MATCH_CLASS": (_op_match_class_310, _arg),
    "COPY_DICT_WITHOUT_KEYS": (_op_copy_dict_without_keys, None),
    # module-level statements (class bodies, interactive)
    "IMPORT_STAR": (_op_import_star, None),
    "PRINT_EXPR": (_op_print_expr, None),
}

# 3.11 and later: exception tables, cells in localsplus, the CALL protocol
_OPS_SINCE_311 = {
    "RESUME": (_op_nop, None),
    "PUSH_NULL": (_op_push_null, None),
    "COPY": (_op_copy, _arg),
    "SWAP": (_op_swap, _arg),
    "MAKE_CELL": (_op_make_cell, _arg),
    "COPY_FREE_VARS": (_op_copy_free_vars, _arg),
    "BINARY_OP": (_op_binary, _binary_op),
    "JUMP_BACKWARD": (_op_jump, _jump),
    "JUMP_BACKWARD_NO_INTERRUPT": (_op_jump, _jump),
    "PUSH_EXC_INFO": (_op_push_exc_info, None),
    "POP_EXCEPT": (_op_pop_except, None),
    "CHECK_EXC_MATCH": (_op_check_exc_match, None),
    "CHECK_EG_MATCH": (_op_check_eg_match, None),
    "RERAISE": (_op_reraise, _arg),
    "BEFORE_WITH": (_op_before_with, None),
    "WITH_EXCEPT_START": (_op_with_except_start, None),
    "RETURN_GENERATOR": (_op_return_generator, None),
    "YIELD_VALUE": (_op_yield_value, _yield_value),
    "END_ASYNC_FOR": (_op_end_async_for, None),
    "MATCH_KEYS": (_op_match_keys, None),
    "MATCH_CLASS": (_op_match_class, _arg),
}

_OPS_311 = {
    "LOAD_GLOBAL": (_op_load_global_null_first, _name_and_flag),
    "LOAD_ATTR": (_op_load_attr, _argval),
    "LOAD_METHOD": (_op_load_method, _argval),
    "LOAD_CLASSDEREF": (_op_load_classderef, _deref),
    "UNARY_POSITIVE": (_op_unary, _fixed(operator.pos)),
    "LIST_TO_TUPLE": (_op_list_to_tuple, None),
    "FORMAT_VALUE": (_op_format_value, _format_value),
    "POP_JUMP_FORWARD_IF_FALSE": (_op_pop_jump_if_false, _jump),
    "POP_JUMP_BACKWARD_IF_FALSE": (_op_pop_jump_if_false, _jump),
    "POP_JUMP_FORWARD_IF_TRUE": (_op_pop_jump_if_true, _jump),
    "POP_JUMP_BACKWARD_IF_TRUE": (_op_pop_jump_if_true, _jump),
    "POP_JUMP_FORWARD_IF_NONE": (_op_pop_jump_if_none, _jump),
    "POP_JUMP_BACKWARD_IF_NONE": (_op_pop_jump_if_none, _jump),
    "POP_JUMP_FORWARD_IF_NOT_NONE": (_op_pop_jump_if_not_none, _jump),
    "POP_JUMP_BACKWARD_IF_NOT_NONE": (_op_pop_jump_if_not_none, _jump),
    "JUMP_IF_FALSE_OR_POP": (_op_jump_if_false_or_pop, _jump),
    "JUMP_IF_TRUE_OR_POP": (_op_jump_if_true_or_pop, _jump),
    "FOR_ITER": (_op_for_iter_pop, _jump),
    "PRECALL": (_op_nop, None),
    "KW_NAMES": (_op_kw_names, _const),
    "CALL": (_op_call_null_first, _arg),
    "CALL_FUNCTION_EX": (_op_call_function_ex_null_first, _arg),
    "MAKE_FUNCTION": (_op_make_function_311, _arg),
    "SEND": (_op_send_311, _jump),
    "ASYNC_GEN_WRAP": (_op_async_gen_wrap, None),
    "PREP_RERAISE_STAR": (_op_prep_reraise_star, None),
    "COPY_DICT_WITHOUT_KEYS": (_op_copy_dict_without_keys, None),
    "IMPORT_STAR": (_op_import_star, None),
    "PRINT_EXPR": (_op_print_expr, None),
}

# 3.12 and later
_OPS_SINCE_312 = {
    "LOAD_FAST_CHECK": (_op_load_fast, _arg),
    "LOAD_FAST_AND_CLEAR": (_op_load_fast_and_clear, _arg),
    "LOAD_FROM_DICT_OR_DEREF": (_op_load_from_dict_or_deref, _deref),
    "LOAD_FROM_DICT_OR_GLOBALS": (_op_load_from_dict_or_globals, _argval),
    "LOAD_LOCALS": (_op_load_locals, None),
    "BINARY_SLICE": (_op_binary_slice, None),
    "STORE_SLICE": (_op_store_slice, None),
    "POP_JUMP_IF_FALSE": (_op_pop_jump_if_false, _jump),
    "POP_JUMP_IF_TRUE": (_op_pop_jump_if_true, _jump),
    "POP_JUMP_IF_NONE": (_op_pop_jump_if_none, _jump),
    "POP_JUMP_IF_NOT_NONE": (_op_pop_jump_if_not_none, _jump),
    "FOR_ITER": (_op_for_iter_to_end_for, _for_iter_target),
    "RETURN_CONST": (_op_return_const, _const),
    "SEND": (_op_send_312, _jump),
    "END_SEND": (_op_end_send, None),
    "CLEANUP_THROW": (_op_cleanup_throw, None),
    "CALL_INTRINSIC_1": (_op_call_intrinsic_1, _intrinsic_1),
    "CALL_INTRINSIC_2": (_op_call_intrinsic_2, _intrinsic_2),
}

_OPS_312 = {
    "LOAD_GLOBAL": (_op_load_global_null_first, _name_and_flag),
    "LOAD_ATTR": (_op_load_attr_or_method_null_first, _name_and_flag),
    "LOAD_SUPER_ATTR": (_op_load_super_attr_null_first, _super_attr),
    "END_FOR": (_op_end_for_312, None),
    "FORMAT_VALUE": (_op_format_value, _format_value),
    "KW_NAMES": (_op_kw_names, _const),
    "CALL": (_op_call_null_first, _arg),
    "CALL_FUNCTION_EX": (_op_call_function_ex_null_first, _arg),
    "MAKE_FUNCTION": (_op_make_function_311, _arg),
}

_OPS_313 = {
    "LOAD_GLOBAL": (_op_load_global_null_after, _name_and_flag),
    "LOAD_ATTR": (_op_load_attr_or_method_null_after, _name_and_flag),
    "LOAD_SUPER_ATTR": (_op_load_super_attr_null_after, _super_attr),
    "LOAD_FAST_LOAD_FAST": (_op_load_fast_load_fast, _two_slots),
    "STORE_FAST_LOAD_FAST": (_op_store_fast_load_fast, _two_slots),
    "STORE_FAST_STORE_FAST": (_op_store_fast_store_fast, _two_slots),
    "END_FOR": (_op_pop_top, None),
    "TO_BOOL": (_op_to_bool, None),
    "CONVERT_VALUE": (_op_convert_value, _conversion),
    "FORMAT_SIMPLE": (_op_format_simple, None),
    "FORMAT_WITH_SPEC": (_op_format_with_spec, None),
    "CALL": (_op_call_callable_first, _arg),
    "CALL_KW": (_op_call_kw, _arg),
    "CALL_FUNCTION_EX": (_op_call_function_ex_null_after, _arg),
    "MAKE_FUNCTION": (_op_make_function_313, None),
    "SET_FUNCTION_ATTRIBUTE": (_op_set_function_attribute, _arg),
}

_OPCODE_TABLES = {
    (3, 10): {**_COMMON, **_OPS_310},
    (3, 11): {**_COMMON, **_OPS_SINCE_311, **_OPS_311},
    (3, 12): {**_COMMON, **_OPS_SINCE_311, **_OPS_SINCE_312, **_OPS_312},
    (3, 13): {**_COMMON, **_OPS_SINCE_311, **_OPS_SINCE_312, **_OPS_313},
}
_OPCODES = _OPCODE_TABLES[_PY]


# =================================================================================================
# Entry point and error reporting
# =================================================================================================

def interpret(fn, args=(), kwargs=None, hooks: InterpreterHooks | None = None):
    """Runs fn(*args, **kwargs) by interpreting its bytecode; returns its result."""
    ctx = _Context(hooks if hooks is not None else InterpreterHooks())
    chain = _state.exc_chain
    chain.append(sys.exc_info()[1])
    try:
        return _call(ctx, fn, tuple(args), dict(kwargs) if kwargs else None)
    except BaseException as exc:
        _attach_user_stack(exc)
        exc.__traceback__ = _without_interpreter_frames(exc.__traceback__)
        if _BARE_RAISE_USES_EXCEPTION_TRACEBACK:
            raise
        raise exc  # (adds this frame to the traceback)
    finally:
        chain.pop()


def _format_user_frames(frames) -> str:
    lines = ["Interpreted Python stack (most recent call last):"]
    for filename, lineno, name in frames:
        lines.append(f'  File "{filename}", line {lineno}, in {name}')
        source = linecache.getline(filename, lineno).strip()
        if source:
            lines.append(f"    {source}")
    return "\n".join(lines)


def _attach_user_stack(exc) -> None:
    """Adds the interpreted stack recorded on ``exc`` as a note (once)."""
    frames = getattr(exc, "thunder_user_frames", None)
    if not frames or getattr(exc, "__thunder_frames__", None) is not None:
        return
    text = _format_user_frames(frames)
    exc.__thunder_frames__ = text
    if hasattr(exc, "add_note"):
        exc.add_note(text)
    elif len(exc.args) == 1 and isinstance(exc.args[0], str) and type(exc).__str__ is BaseException.__str__:
        exc.args = (f"{exc.args[0]}\n{text}",)


def _without_interpreter_frames(tb):
    """``tb`` without the entries of this module, so tracebacks show the user's caller and the
    native code that raised, not the interpreter's internals."""
    entries = []
    while tb is not None:
        if tb.tb_frame.f_code.co_filename != __file__:
            entries.append(tb)
        tb = tb.tb_next
    result = None
    for entry in reversed(entries):
        result = types.TracebackType(result, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return result
