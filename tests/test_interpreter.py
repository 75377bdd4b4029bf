"""Tests of the bytecode interpreter (thunder/acquire/interpreter.py).

Standard library + pytest only, so they run under every supported Python (3.10 - 3.13):
    PYTHONPATH=thunder_core/src python -m pytest tests/test_interpreter.py -q --noconftest
The module is loaded by file path so that ``thunder/__init__.py`` (which imports torch) is not.
Most tests compare ``interpret(f, args)`` with ``f(*args)``, results and exceptions alike.
"""

import asyncio
import collections
import contextlib
import dataclasses
import dis
import enum
import functools
import importlib.util
import itertools
import operator
import pathlib
import sys
import textwrap

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "thunder_core/src/thunder/acquire/interpreter.py"
_spec = importlib.util.spec_from_file_location("thunder_interpreter_under_test", _PATH)
interp = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = interp
_spec.loader.exec_module(interp)

interpret = interp.interpret
Origin = interp.Origin
InterpreterHooks = interp.InterpreterHooks
AcquisitionError = interp.AcquisitionError

PY = sys.version_info[:2]


def run_both(f, *args, **kwargs):
    """(native outcome, interpreted outcome); an outcome is ("ok", value) or ("raise", type, str)."""
    outcomes = []
    for runner in (lambda: f(*args, **kwargs), lambda: interpret(f, args, kwargs)):
        try:
            outcomes.append(("ok", runner()))
        except Exception as e:  # noqa: BLE001
            outcomes.append(("raise", type(e), str(e).split("\n")[0]))
    return outcomes


def check(f, *args, **kwargs):
    """Programs that define classes return instances of different (but alike) classes in the two
    runs; those are compared by repr."""
    native, interpreted = run_both(f, *args, **kwargs)
    if interpreted != native:
        assert repr(interpreted) == repr(native)
    return native


# =================================================================================================
# Programs compared with native execution
# =================================================================================================

GLOBAL_VALUE = 10
GLOBAL_LIST = [1, 2, 3]


class Vec:
    def __init__(self, *xs):
        self.xs = list(xs)

    def __matmul__(self, other):
        return sum(a * b for a, b in zip(self.xs, other.xs))

    def __eq__(self, other):
        return isinstance(other, Vec) and self.xs == other.xs

    def __repr__(self):
        return f"Vec{tuple(self.xs)}"


def arithmetic(a, b):
    return (a + b, a - b, a * b, a / b, a // b, a % b, a ** 2, -a, +a, ~a, not a,
            a << 2, a >> 1, a & b, a | b, a ^ b, Vec(1, 2) @ Vec(3, 4), divmod(a, b), abs(-a))


def inplace(a, b):
    x = a
    x += b
    x -= 1
    x *= 3
    x //= 2
    x %= 100
    x **= 2
    x <<= 1
    x >>= 1
    x &= 0xFFFF
    x |= 1
    x ^= 3
    y = x / 7
    y /= 2
    lst = [1]
    alias = lst
    lst += [2]
    s = "a"
    s += "b"
    m = Vec(1, 2)
    m @= Vec(1, 1)
    return x, y, lst, alias is lst, s, m


def comparisons(a, b, c):
    return (a < b, a <= b, a == b, a != b, a > b, a >= b, a < b < c, a < b > c, 1 < a <= b < c,
            a in [1, 2, 3], a not in (4, 5), a is None, a is not None, "x" in "xyz", a == a)


def truthiness(a, b):
    r = []
    r.append(a and b)
    r.append(a or b)
    r.append(not a and b)
    r.append((a or None) and (b or 0))
    r.append("yes" if a else "no")
    if a and not b:
        r.append(1)
    elif a or b:
        r.append(2)
    else:
        r.append(3)
    if a is None or b is not None:
        r.append(4)
    return r


def walrus(xs):
    if (n := len(xs)) > 2:
        return n, [y for x in xs if (y := x * 2) > 2]
    return n


def build_and_unpack(xs, d):
    a, b, *rest = xs
    *init, last = xs
    first, *middle, final = xs
    (p, q), r = (1, 2), 3
    t = (*xs, *rest)
    lst = [*xs, 0, *t]
    s = {*xs, 9}
    merged = {**d, "z": 0, **{"y": 1}}
    a, b = b, a
    x, y, z = (i * 2 for i in range(3))
    (u, v), *w = [(7, 8), 9]
    return a, b, rest, init, last, first, middle, final, p, q, r, t, lst, sorted(s), merged, x, y, z, u, v, w


def unpack_too_many():
    a, b = [1, 2, 3]
    return a, b


def unpack_not_enough():
    a, b, c = iter([1, 2])
    return a, b, c


def unpack_ex_not_enough():
    a, *b, c = [1]
    return a, b, c


def unpack_non_iterable():
    a, b = 5
    return a, b


def slicing(xs):
    ys = list(xs)
    ys[1:3] = ["a", "b", "c"]
    del ys[0]
    del ys[::2]
    zs = list(range(10))
    zs[::3] = [0] * len(zs[::3])
    return xs[1:], xs[:-1], xs[::2], xs[1:4:2], xs[::-1], ys, zs, xs[slice(1, None)]


def subscripts(d, k):
    d = dict(d)
    d[k] = 1
    d["new"] = d[k] + 1
    del d[k]
    nested = {"a": {"b": [10, 20]}}
    nested["a"]["b"][1] += 5
    return d, nested


def deletes():
    x = 1
    del x
    obj = types_namespace()
    obj.a = 1
    obj.b = 2
    del obj.a
    try:
        return x  # noqa: F821
    except UnboundLocalError as e:
        return str(e), vars(obj)


def types_namespace():
    import types
    return types.SimpleNamespace()


def unbound_local():
    if False:
        y = 1
    return y  # noqa: F821


def unbound_free():
    def inner():
        return z
    inner_result = None
    try:
        inner_result = inner()
    except NameError as e:
        inner_result = str(e)
    z = 1
    return inner_result, inner()


def string_formatting(x, name):
    width = 8
    return (f"{x}", f"{x!r}", f"{name!s:>{width}}", f"{x:.3f}", f"{name!a}", f"{x=}", f"{'a' 'b'}",
            "%s-%d" % (name, 3), "{}/{}".format(x, name), f"{x:{width}.{2}f}|{name:^{width}}")


def loops(n):
    out = []
    for i in range(n):
        if i == 2:
            continue
        if i == 7:
            break
        out.append(i)
    else:
        out.append("no-break")
    for j in range(2):
        pass
    else:
        out.append("else")
    k = 0
    while k < n:
        k += 3
        if k > 100:
            break
    else:
        out.append(("while-else", k))
    for a in range(3):
        for b in range(3):
            if b == a:
                break
            out.append((a, b))
    return out


def assertions(x):
    assert x > 0
    assert x < 10, f"too big: {x}"
    return x


def call_targets(a, b=2, *args, c, d=4, **kwargs):
    return a, b, args, c, d, sorted(kwargs.items())


def positional_only(a, b, /, c, *, d=1):
    return a, b, c, d


def calls():
    args = (1, 2, 3)
    kwargs = {"c": 5, "z": 6}
    return (call_targets(1, c=3), call_targets(1, 2, 3, 4, c=5, e=6), call_targets(*args, **kwargs),
            call_targets(0, *args, c=1, **{"q": 2}), positional_only(1, 2, 3), positional_only(1, 2, c=3, d=4),
            call_targets(*[1], **dict(c=2)), max(*args), sorted([3, 1, 2], reverse=True),
            dict(a=1, **{"b": 2}), (lambda *a, **k: (a, k))(1, x=2), print.__name__)


def call_missing():
    return call_targets()


def call_too_many():
    return positional_only(1, 2, 3, 4)


def call_unexpected_kw():
    return positional_only(1, 2, 3, e=4)


def call_multiple_values():
    return call_targets(1, a=2, c=3)


def call_posonly_as_kw():
    return positional_only(1, b=2, c=3)


def call_duplicate_kwargs():
    return call_targets(1, c=1, **{"c": 2})


def call_star_not_iterable():
    return call_targets(*5)


def call_missing_kwonly():
    return call_targets(1)


def closures(n):
    counter = 0

    def inc(by=1):
        nonlocal counter
        counter += by
        return counter

    def make_adder(k):
        return lambda x: x + k + n

    adders = [make_adder(i) for i in range(3)]
    inc()
    inc(5)
    fns = [lambda i=i: i * n for i in range(3)]
    late = [lambda: i for i in range(3)]

    def outer():
        a = 1

        def middle():
            b = 2

            def inner():
                nonlocal a
                a += b
                return a + n
            return inner()
        return middle()

    def cell_arg(x):
        def get():
            return x
        x += 1
        return get()

    def deleted_cell():
        v = 1

        def read():
            return v  # noqa: F821
        del v
        try:
            return read()
        except NameError as e:
            return str(e)

    return (counter, [f(10) for f in adders], [f() for f in fns], [f() for f in late], outer(), cell_arg(5),
            deleted_cell())


def use_globals():
    global GLOBAL_VALUE
    old = GLOBAL_VALUE
    GLOBAL_VALUE = old + 1
    new = GLOBAL_VALUE
    GLOBAL_VALUE = old
    global TEMP_GLOBAL
    TEMP_GLOBAL = 1
    del TEMP_GLOBAL
    return old, new, len(GLOBAL_LIST), "TEMP_GLOBAL" in globals()


def comprehensions(xs):
    x = "outer"
    squares = [x * x for x in xs]
    evens = {x for x in xs if x % 2 == 0}
    mapping = {x: str(x) for x in xs}
    gen_sum = sum(x for x in xs if x > 1)
    nested = [(a, b) for a in xs for b in range(a) if a != b]
    matrix = [[i * j for j in range(3)] for i in range(3)]
    captured = [lambda: y for y in xs]
    total = 0
    for v in (x + 1 for x in xs):
        total += v
    return x, squares, sorted(evens), mapping, gen_sum, nested, matrix, [f() for f in captured], total


def match_statement(value):
    match value:
        case 0 | 1:
            return "small"
        case int(n) if n > 100:
            return f"big {n}"
        case [1, 2, *rest]:
            return ("seq", rest)
        case (a, b):
            return ("pair", a, b)
        case {"kind": "point", "x": x, **others}:
            return ("point", x, others)
        case {"kind": _}:
            return "other kind"
        case Point(x=0, y=yy):
            return ("on y axis", yy)
        case Point(xx, yy) as p:
            return ("point", xx, yy, p.x)
        case str() as s:
            return ("str", s)
        case Color.RED:
            return "red"
        case _:
            return "default"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Color(enum.Enum):
    RED = 1
    GREEN = 2


MATCH_CASES = [0, 1, 500, [1, 2, 3, 4], (5, 6), {"kind": "point", "x": 1, "y": 2}, {"kind": "z"}, Point(0, 3),
               Point(1, 2), "text", Color.RED, 3.5, {"x": 1}]


class Recorder:
    def __init__(self, log, suppress=False):
        self.log = log
        self.suppress = suppress

    def __enter__(self):
        self.log.append("enter")
        return self

    def __exit__(self, exc_type, exc, tb):
        self.log.append(("exit", exc_type.__name__ if exc_type else None))
        return self.suppress


@contextlib.contextmanager
def managed(log):
    log.append("setup")
    try:
        yield "resource"
    except KeyError:
        log.append("handled")
    finally:
        log.append("teardown")


def with_statements():
    log = []
    with Recorder(log) as r:
        log.append(r is not None)
    with Recorder(log, suppress=True):
        raise ValueError("suppressed")
    try:
        with Recorder(log):
            raise KeyError("escapes")
    except KeyError as e:
        log.append(repr(e))
    with Recorder(log), Recorder(log) as second:
        log.append(type(second).__name__)
    with managed(log) as res:
        log.append(res)
    with managed(log):
        raise KeyError("inside")

    def returns_inside():
        with Recorder(log):
            return "returned"
    log.append(returns_inside())
    return log


def with_not_a_context_manager():
    with 5:
        pass


def exceptions():
    log = []
    try:
        log.append("body")
    except Exception:
        log.append("never")
    else:
        log.append("else")
    finally:
        log.append("finally")
    try:
        int("x")
    except (TypeError, ValueError) as e:
        log.append(type(e).__name__)
    try:
        try:
            raise KeyError("inner")
        finally:
            log.append("inner finally")
    except LookupError as e:
        log.append(("outer", str(e)))
    try:
        try:
            raise ValueError("first")
        except ValueError:
            raise TypeError("second")
    except TypeError as e:
        log.append((repr(e.__context__), e.__cause__, e.__suppress_context__))
    try:
        try:
            raise ValueError("first")
        except ValueError as inner:
            raise TypeError("second") from inner
    except TypeError as e:
        log.append((repr(e.__cause__), e.__suppress_context__))
    try:
        try:
            raise ValueError("first")
        except ValueError:
            raise TypeError("second") from None
    except TypeError as e:
        log.append((e.__cause__, e.__suppress_context__, repr(e.__context__)))
    try:
        try:
            raise ValueError("re")
        except ValueError:
            raise
    except ValueError as e:
        log.append(("reraised", str(e)))
    try:
        {}["missing"]
    except KeyError as e:
        try:
            raise RuntimeError("during")
        except RuntimeError as e2:
            log.append(repr(e2.__context__))
        log.append(repr(e))
    try:
        raise IndexError
    except IndexError as e:
        log.append(type(e).__name__)
    log.append("e" in locals())
    for i in range(3):
        try:
            if i == 1:
                continue
            if i == 2:
                break
        finally:
            log.append(("loop finally", i))
    try:
        next(iter([]))
    except StopIteration:
        log.append("stop")
    return log


def return_in_finally():
    try:
        return "try"
    finally:
        return "finally"  # noqa: B012


def finally_overrides_exception():
    for _ in range(1):
        try:
            raise ValueError
        finally:
            break  # noqa: B012
    return "swallowed"


def raise_nested_propagates():
    def level2():
        raise LookupError("deep")

    def level1():
        try:
            level2()
        except KeyError:
            return "wrong"
    return level1()


def raise_non_exception():
    raise 5


def bare_raise_without_exception():
    raise


def except_non_exception_class():
    try:
        raise ValueError
    except 5:  # noqa
        pass


def exc_info_inside_except():
    try:
        raise ValueError("v")
    except ValueError:
        inside = sys.exc_info()
        return inside[0].__name__, str(inside[1]), sys.exc_info()[1] is inside[1]


def generator(n):
    total = 0
    for i in range(n):
        received = yield i
        if received:
            total += received
    return total


def generators():
    g = generator(4)
    first = next(g)
    second = g.send(10)
    third = g.send(5)
    rest = list(g)

    def delegating():
        result = yield from generator(3)
        yield ("sub returned", result)

    def with_finally(log):
        try:
            yield 1
            yield 2
        finally:
            log.append("closed")

    log = []
    wf = with_finally(log)
    next(wf)
    wf.close()

    def catcher():
        while True:
            try:
                yield
            except ValueError as e:
                yield f"caught {e}"

    c = catcher()
    next(c)
    thrown = c.throw(ValueError("boom"))

    def inner_catcher():
        try:
            yield "inner"
        except KeyError:
            yield "inner caught"
        return "inner done"

    def outer_delegator():
        value = yield from inner_catcher()
        yield value

    od = outer_delegator()
    od_values = [next(od), od.throw(KeyError("k")), next(od)]

    gen_exp = (x * 2 for x in range(4))
    return (first, second, third, rest, list(delegating()), log, thrown, od_values, list(gen_exp),
            list(zip(generator(3), "abc")), sum(generator(5)), sorted(generator(3), reverse=True))


def generator_ignoring_exit():
    def stubborn():
        try:
            yield 1
        except GeneratorExit:
            pass
        yield 2

    g = stubborn()
    next(g)
    g.close()


def generator_leaking_stopiteration():
    def leaky():
        yield 1
        raise StopIteration("leak")

    return list(leaky())


def generator_throw_unhandled():
    g = generator(3)
    next(g)
    g.throw(KeyError("unhandled"))


def imports():
    import collections.abc as cabc
    import os.path
    from functools import reduce as red
    from json import decoder
    from os import path, sep
    return (os.path.join("a", "b"), cabc.Mapping.__name__, red(operator.add, [1, 2, 3]), path.basename("/x/y"),
            sep, decoder.__name__)


def import_missing_name():
    from os import definitely_not_there  # noqa: F401


def classes():
    factor = 3

    class Base:
        count = 0
        scaled = factor * 2

        def __init__(self, value):
            self.value = value
            Base.count += 1

        def describe(self):
            return f"{type(self).__name__}({self.value})"

        @staticmethod
        def static(x):
            return x + 1

        @classmethod
        def make(cls, value):
            return cls(value)

        @property
        def double(self):
            return self.value * 2

        @double.setter
        def double(self, v):
            self.value = v / 2

    class Derived(Base):
        def __init__(self, value, extra):
            super().__init__(value)
            self.extra = extra

        def describe(self):
            return "derived " + super().describe() + f" {__class__.__name__}"

        @classmethod
        def make(cls, value):
            return super().make(value) if False else cls(value, "made")

    class Annotated:
        x: int = 1
        y: "str"

    d = Derived(2, "e")
    d.double = 10
    b = Base.make(7)
    return (d.describe(), d.value, d.double, Base.static(1), b.describe(), Derived.make(1).extra,
            Base.count, Base.scaled, Derived.__qualname__, Derived.__module__, Annotated.__annotations__,
            Derived.__mro__[1] is Base, isinstance(d, Base), issubclass(Derived, Base))


def super_chains():
    class A:
        def who(self):
            return ["A"]

    class B(A):
        def who(self):
            return ["B"] + super().who()

    class C(A):
        def who(self):
            return ["C"] + super().who()

    class D(B, C):
        def who(self):
            return ["D"] + super().who()

        def explicit(self):
            return super(B, self).who()

    class WithCellArg(A):
        def who(self):
            def use_self():
                return self
            return ["cell"] + super().who() + [use_self() is self]

    return D().who(), D().explicit(), WithCellArg().who()


class Meta(type):
    def __new__(mcls, name, bases, ns, **kwargs):
        ns["created_by_meta"] = kwargs
        return super().__new__(mcls, name, bases, ns)

    def __call__(cls, *args, **kwargs):
        instance = super().__call__(*args, **kwargs)
        instance.via_meta = True
        return instance


def metaclasses():
    class WithMeta(metaclass=Meta, flag=True):
        def __init__(self, v):
            self.v = v

    class Registry:
        subclasses = []

        def __init_subclass__(cls, tag=None, **kwargs):
            super().__init_subclass__(**kwargs)
            Registry.subclasses.append((cls.__name__, tag))

    class One(Registry, tag="one"):
        pass

    class Two(Registry):
        pass

    w = WithMeta(5)
    return WithMeta.created_by_meta, w.v, w.via_meta, Registry.subclasses


class Attrs:
    def __init__(self):
        self._x = 1

    @property
    def x(self):
        return self._x + GLOBAL_VALUE

    def __getattr__(self, name):
        if name.startswith("dyn_"):
            return name[4:]
        raise AttributeError(name)


class Descriptor:
    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        return (self.name, obj is None)


class HasDescriptor:
    d = Descriptor()


def descriptors():
    a = Attrs()
    return (a.x, a.dyn_hello, getattr(a, "dyn_z"), hasattr(a, "nope"), getattr(a, "nope", "default"),
            HasDescriptor.d, HasDescriptor().d)


class Callable:
    def __init__(self, k):
        self.k = k

    def __call__(self, x, *, scale=1):
        return (x + self.k) * scale


def decorator(tag):
    def wrap(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return (tag, fn(*args, **kwargs))
        return wrapper
    return wrap


@decorator("deco")
def decorated(a, b=1):
    """doc"""
    return a + b


def callables():
    part = functools.partial(call_targets, 1, c=3)
    nested = functools.partial(part, 2)
    bound = Attrs().__getattr__
    static = staticmethod(lambda x: x * 2)
    return (Callable(2)(3), Callable(2)(3, scale=2), part(), part(5, d=6), nested("x"), bound("dyn_b"),
            decorated(1), decorated.__name__, decorated.__doc__, static(4), str.upper("a"), "-".join(["a", "b"]),
            [].__class__.__name__, functools.reduce(lambda a, b: a * b, [1, 2, 3, 4]),
            list(map(lambda v: v + 1, [1, 2])), sorted(["bb", "a", "ccc"], key=len),
            min([3, 1, 2], key=lambda v: -v), max("abc"), list(itertools.accumulate([1, 2, 3])),
            list(filter(None, [0, 1, 2])), isinstance(1, (int, str)), callable(part))


@dataclasses.dataclass(frozen=True)
class Frozen:
    a: int
    b: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        object.__setattr__(self, "b", self.b + [self.a])


def dataclasses_and_enums():
    @dataclasses.dataclass(order=True)
    class Item:
        priority: int
        name: str = "x"

    class Mood(enum.Enum):
        HAPPY = "h"
        SAD = "s"

    class Flags(enum.IntFlag):
        A = 1
        B = 2

    items = sorted([Item(3), Item(1, "a")])
    Pair = collections.namedtuple("Pair", "left right")
    p = Pair(1, right=2)
    return (items, Frozen(1), Mood("h"), Mood.SAD.value, [m.name for m in Mood], Flags.A | Flags.B,
            Color(2), p, p.left, p._replace(left=5), dataclasses.asdict(Item(2)))


class NewAndInit:
    created = []

    def __new__(cls, *args):
        instance = super().__new__(cls)
        NewAndInit.created.append(args)
        return instance

    def __init__(self, a, b=2):
        self.total = a + b


class ListChild(list):
    def __init__(self, items, tag):
        super().__init__(items)
        self.tag = tag


class MyError(Exception):
    def __init__(self, code):
        super().__init__(f"code {code}")
        self.code = code


class BadInit:
    def __init__(self):
        return 5


def instance_creation():
    n = NewAndInit(1)
    lc = ListChild([1, 2], "t")
    try:
        raise MyError(7)
    except MyError as e:
        err = (str(e), e.code, e.args)
    return (n.total, NewAndInit.created[-1], lc, lc.tag, len(lc), err, int("12"), list("ab"), dict(a=1),
            type(5).__name__, type("Dyn", (), {"v": 1}).v, object().__class__.__name__)


def bad_init():
    return BadInit()


def scope_builtins(a):
    b = a + 1
    loc = dict(locals())
    expr = eval("a + b")
    out = []
    exec("out.append(a + b)")
    g = globals() is sys.modules[__name__].__dict__
    return sorted(loc.items()), expr, out, g, sorted(vars()), "b" in dir(), eval("b", {"b": 0})


def recursion(n):
    if n <= 1:
        return 1
    return n * recursion(n - 1)


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def big_function_source(n):
    lines = ["def big(x):", "    total = 0"]
    for i in range(n):
        lines.append(f"    if x > {i}:\n        total += {i} * x + {float(i)}")
    lines.append("    return total")
    return "\n".join(lines)


_ns = {}
exec(big_function_source(300), _ns)
big = _ns["big"]


def lambdas():
    f = lambda x, *, k=2: x * k  # noqa: E731
    g = lambda *a: sum(a)  # noqa: E731
    return (f(3), f(3, k=4), g(1, 2, 3), (lambda: (yield 1))().__next__(),
            sorted([(1, "b"), (0, "a")], key=lambda p: p[1]))


def native_errors_caught(d):
    out = []
    for key in ("a", "missing"):
        try:
            out.append(d[key])
        except KeyError as e:
            out.append(("missing", e.args))
    try:
        [][0]
    except IndexError as e:
        out.append(str(e))
    try:
        None.attr
    except AttributeError as e:
        out.append(type(e).__name__)
    return out


def chained_exception_context():
    try:
        try:
            1 / 0
        except ZeroDivisionError:
            {}["k"]
    except KeyError as e:
        return type(e.__context__).__name__


def generator_cleanup_and_exc_info():
    log = []

    def gen():
        with contextlib.ExitStack() as stack:
            stack.callback(log.append, "callback")
            try:
                yield 1
                yield 2
            finally:
                log.append("finally")

    g = gen()
    next(g)
    g.close()

    def gen2():
        try:
            return (yield 1)
        finally:
            log.append(sys.exc_info()[0])

    g = gen2()
    next(g)
    try:
        g.send(42)
    except StopIteration as e:
        log.append(e.value)
    return log


def exc_info_in_finally():
    log = []
    try:
        try:
            raise ValueError("a")
        finally:
            log.append(repr(sys.exc_info()[1]))
    except ValueError:
        log.append(repr(sys.exc_info()[1]))
    log.append(sys.exc_info())
    return log


def exit_raising():
    class Bad:
        def __enter__(self):
            return 1

        def __exit__(self, *exc):
            raise KeyError("from exit")

    try:
        with Bad():
            raise ValueError("body")
    except KeyError as e:
        return repr(e), repr(e.__context__)


def keyword_edge_cases():
    def f(**kw):
        return kw

    try:
        f(**{1: 2})
    except TypeError as e:
        message = str(e)

    def g(a, /, **kw):
        return a, kw
    return message, g(1, a=2)


def continue_in_finally():
    out = []
    for i in range(4):
        try:
            try:
                if i % 2:
                    raise ValueError(i)
            finally:
                if i == 3:
                    continue  # noqa: B012
            out.append(("ok", i))
        except ValueError as e:
            out.append(("err", e.args))
    return out


def class_scopes():
    x = 10

    class K:
        x = 5
        y = [x for _ in range(2)]

        def m(self):
            return x
    return K.y, K().m()


def async_without_event_loop():
    async def inner():
        await asyncio.sleep(0)
        raise KeyError("async")

    async def outer():
        try:
            await inner()
        except KeyError as e:
            return "caught " + repr(e)

    c = outer()
    try:
        c.send(None)
        c.send(None)
    except StopIteration as e:
        return e.value


def generator_raising_on_close():
    def g():
        try:
            yield 1
        except GeneratorExit:
            raise ValueError("in close")

    x = g()
    next(x)
    try:
        x.close()
    except ValueError as e:
        return repr(e)


def class_decorators_and_slots():
    seen = []

    def deco(cls):
        cls.tag = "t"
        return cls

    @deco
    class A:
        __slots__ = ("v",)

        def __init_subclass__(cls):
            seen.append(cls.__name__)

        def __repr__(self):
            return "A()"

    class B(A):
        pass

    b = B()
    b.v = 1
    return seen, A.tag, repr(b), b.v


def dunder_protocols():
    class N:
        def __init__(self, v):
            self.v = v

        def __add__(self, o):
            return N(self.v + (o.v if isinstance(o, N) else o))

        __radd__ = __add__

        def __iadd__(self, o):
            self.v += 100
            return self

        def __lt__(self, o):
            return self.v < o.v

        def __bool__(self):
            return self.v != 0

        def __len__(self):
            return 3

        def __getitem__(self, i):
            if i >= 3:
                raise IndexError
            return i * self.v

        def __contains__(self, x):
            return x == 42

    n = 1 + N(1) + 2
    n += 1
    a, b, c = N(2)
    return n.v, N(1) < N(2), bool(N(0)), a, b, c, 42 in N(1), list(N(3)), sorted([N(3), N(1)])[0].v


def attribute_fallbacks():
    class A:
        @functools.cached_property
        def c(self):
            return 1

        @property
        def p(self):
            raise AttributeError("inner")

        def __getattr__(self, name):
            return "ga:" + name

    a = A()
    return a.c, a.p, a.zz


def warnings_and_context_managers():
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("hello", UserWarning)
    return [str(w.message) for w in caught]


PROGRAMS = [
    (arithmetic, (7, 3)),
    (arithmetic, (-5, 2)),
    (inplace, (5, 3)),
    (comparisons, (1, 2, 3)),
    (comparisons, (3, 2, 1)),
    (comparisons, (None, 2, 1)),
    (truthiness, (0, 1)),
    (truthiness, ("a", None)),
    (truthiness, ([], "")),
    (walrus, ([1, 2, 3],)),
    (walrus, ([1],)),
    (build_and_unpack, ([1, 2, 3, 4], {"k": 1})),
    (unpack_too_many, ()),
    (unpack_not_enough, ()),
    (unpack_ex_not_enough, ()),
    (unpack_non_iterable, ()),
    (slicing, ([0, 1, 2, 3, 4, 5],)),
    (slicing, ("abcdef",)),
    (subscripts, ({"a": 1}, "a")),
    (deletes, ()),
    (unbound_local, ()),
    (unbound_free, ()),
    (string_formatting, (3.14159, "name")),
    (loops, (5,)),
    (loops, (10,)),
    (assertions, (5,)),
    (assertions, (-1,)),
    (assertions, (50,)),
    (calls, ()),
    (call_missing, ()),
    (call_too_many, ()),
    (call_unexpected_kw, ()),
    (call_multiple_values, ()),
    (call_posonly_as_kw, ()),
    (call_duplicate_kwargs, ()),
    (call_star_not_iterable, ()),
    (call_missing_kwonly, ()),
    (closures, (2,)),
    (use_globals, ()),
    (comprehensions, ([1, 2, 3],)),
    *[(match_statement, (case,)) for case in MATCH_CASES],
    (with_statements, ()),
    (with_not_a_context_manager, ()),
    (exceptions, ()),
    (return_in_finally, ()),
    (finally_overrides_exception, ()),
    (raise_nested_propagates, ()),
    (raise_non_exception, ()),
    (bare_raise_without_exception, ()),
    (except_non_exception_class, ()),
    (exc_info_inside_except, ()),
    (generators, ()),
    (generator_ignoring_exit, ()),
    (generator_leaking_stopiteration, ()),
    (generator_throw_unhandled, ()),
    (imports, ()),
    (import_missing_name, ()),
    (classes, ()),
    (super_chains, ()),
    (metaclasses, ()),
    (descriptors, ()),
    (callables, ()),
    (dataclasses_and_enums, ()),
    (instance_creation, ()),
    (bad_init, ()),
    (scope_builtins, (4,)),
    (recursion, (30,)),
    (fib, (12,)),
    (big, (150,)),
    (lambdas, ()),
    (native_errors_caught, ({"a": 1},)),
    (chained_exception_context, ()),
    (generator_cleanup_and_exc_info, ()),
    (exc_info_in_finally, ()),
    (exit_raising, ()),
    (keyword_edge_cases, ()),
    (continue_in_finally, ()),
    (class_scopes, ()),
    (async_without_event_loop, ()),
    (generator_raising_on_close, ()),
    (class_decorators_and_slots, ()),
    (dunder_protocols, ()),
    (attribute_fallbacks, ()),
    (warnings_and_context_managers, ()),
    (recursion, (150,)),
]


@pytest.mark.parametrize("fn, args", PROGRAMS, ids=[f"{fn.__name__}-{i}" for i, (fn, _) in enumerate(PROGRAMS)])
def test_program_matches_native(fn, args):
    check(fn, *args)


def test_keyword_arguments_at_top_level():
    check(call_targets, 1, 2, 3, c=4, extra=5)
    check(positional_only, 1, 2, c=3)


def test_exception_group_syntax():
    if PY < (3, 11):
        pytest.skip("except* is 3.11+")
    ns = {}
    exec(textwrap.dedent("""
        def groups():
            log = []
            try:
                raise ExceptionGroup("eg", [ValueError(1), TypeError(2), KeyError(3)])
            except* ValueError as e:
                log.append(("value", repr(e.exceptions)))
            except* (TypeError, KeyError) as e:
                log.append(("other", len(e.exceptions)))
            try:
                try:
                    raise ExceptionGroup("eg", [ValueError(1), TypeError(2)])
                except* ValueError:
                    log.append("handled value")
            except ExceptionGroup as rest:
                log.append(("rest", repr(rest.exceptions)))
            try:
                try:
                    raise ValueError("naked")
                except* ValueError as e:
                    raise
            except ExceptionGroup as e:
                log.append(("naked reraised", repr(e.exceptions)))
            try:
                try:
                    raise ExceptionGroup("eg", [ValueError(1)])
                except* ValueError:
                    raise KeyError("new")
            except ExceptionGroup as e:
                log.append(("raised in handler", repr(e.exceptions)))
            return log
    """), ns)
    check(ns["groups"])


def test_pep695_generics():
    if PY < (3, 12):
        pytest.skip("PEP 695 syntax is 3.12+")
    ns = {}
    exec(textwrap.dedent("""
        def generic():
            def first[T](xs: list[T]) -> T:
                return xs[0]
            class Box[T]:
                def __init__(self, item: T):
                    self.item = item
            def bounded[B: int, C: (int, str), *Ts, **P](x: B) -> B:
                return x
            type Alias[K] = dict[K, int]
            return (first([3, 4]), Box(5).item, [p.__name__ for p in first.__type_params__],
                    Box.__type_params__[0].__name__, [repr(p) for p in bounded.__type_params__],
                    bounded.__type_params__[0].__bound__, bounded.__type_params__[1].__constraints__,
                    Alias.__name__, Alias.__value__, Alias.__type_params__[0].__name__)
    """), ns)
    check(ns["generic"])


def test_async_code():
    async def leaf(x):
        await asyncio.sleep(0)
        return x * 2

    class AsyncCM:
        def __init__(self, log):
            self.log = log

        async def __aenter__(self):
            self.log.append("aenter")
            return self

        async def __aexit__(self, *exc):
            self.log.append(("aexit", exc[0].__name__ if exc[0] else None))
            return True

    async def agen(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i
        return

    class ATicker:
        def __init__(self, n):
            self.n = n

        def __aiter__(self):
            return self

        async def __anext__(self):
            if self.n == 0:
                raise StopAsyncIteration
            self.n -= 1
            return self.n

    async def main():
        log = []
        log.append(await leaf(3))
        log.append(await asyncio.gather(leaf(1), leaf(2)))
        async with AsyncCM(log):
            raise ValueError("suppressed by aexit")
        async for v in agen(3):
            log.append(("agen", v))
        async for v in ATicker(2):
            log.append(("ticker", v))
        log.append([v async for v in agen(2)])
        try:
            await asyncio.wait_for(asyncio.sleep(10), timeout=0.001)
        except asyncio.TimeoutError:
            log.append("timeout")
        g = agen(5)
        log.append(await g.__anext__())
        await g.aclose()
        return log

    def run():
        return asyncio.run(main())

    check(run)
    coro = interpret(leaf, (1,))
    assert type(coro).__name__ == "coroutine" and coro.__name__ == "leaf"
    assert asyncio.run(coro) == 2


# =================================================================================================
# Generators run by the interpreter are real generators
# =================================================================================================

def test_generator_object_protocol():
    g = interpret(generator, (3,))
    assert type(g).__name__ == "generator"
    assert g.__name__ == "generator" and g.__qualname__ == "generator"
    assert next(g) == 0
    assert g.send(4) == 1
    assert g.send(6) == 2
    with pytest.raises(StopIteration) as info:
        g.send(None)
    assert info.value.value == 10


def test_generator_close_runs_finally_and_throw_propagates():
    log = []

    def gen():
        try:
            yield 1
        finally:
            log.append("finally")

    g = interpret(gen)
    assert next(g) == 1
    g.close()
    assert log == ["finally"]
    g2 = interpret(gen)
    next(g2)
    with pytest.raises(KeyError):
        g2.throw(KeyError("x"))
    assert log == ["finally", "finally"]


def test_yield_from_delegation_of_throw_and_close():
    log = []

    def sub():
        try:
            while True:
                try:
                    yield "sub"
                except ValueError as e:
                    log.append(f"sub caught {e}")
        finally:
            log.append("sub closed")

    def outer():
        yield from sub()

    g = interpret(outer)
    assert next(g) == "sub"
    assert g.throw(ValueError("v")) == "sub"
    g.close()
    assert log == ["sub caught v", "sub closed"]


# =================================================================================================
# Hooks
# =================================================================================================

class RecordingHooks(InterpreterHooks):
    def __init__(self):
        self.loads = []
        self.lookasides = []

    def on_load(self, value, origin):
        self.loads.append((origin.kind, origin.key, value))
        return value

    def lookaside(self, fn):
        self.lookasides.append(fn)
        return None

    def kinds(self, key):
        return {kind for kind, k, _ in self.loads if k == key}


class Holder:
    def __init__(self):
        self.attribute = 42


def make_closure_reader():
    captured = "cell value"

    def reader(holder, items, pair):
        g = GLOBAL_VALUE
        a = holder.attribute
        c = captured
        n = len(items)
        i = items[1]
        for element in items:
            pass
        left, right = pair
        return g, a, c, n, i, element, left, right
    return reader


def test_on_load_sees_each_kind_of_origin():
    hooks = RecordingHooks()
    reader = make_closure_reader()
    result = interpret(reader, (Holder(), [5, 6, 7], ("L", "R")), hooks=hooks)
    assert result == (GLOBAL_VALUE, 42, "cell value", 3, 6, 7, "L", "R")
    assert ("global", "GLOBAL_VALUE", GLOBAL_VALUE) in hooks.loads
    assert ("builtin", "len", len) in hooks.loads
    assert ("attr", "attribute", 42) in hooks.loads
    assert ("cell", "captured", "cell value") in hooks.loads
    assert ("call", None, 3) in hooks.loads
    assert ("item", 1, 6) in hooks.loads
    assert [v for kind, _, v in hooks.loads if kind == "iter"] == [5, 6, 7]
    assert ("unpack", 0, "L") in hooks.loads and ("unpack", 1, "R") in hooks.loads


def test_on_load_origin_objects():
    origins = []

    class Hooks(InterpreterHooks):
        def on_load(self, value, origin):
            origins.append(origin)
            return value

    holder = Holder()
    interpret(make_closure_reader(), (holder, [1, 2], (1, 2)), hooks=Hooks())
    by_key = {o.key: o for o in origins if o.key is not None}
    assert by_key["GLOBAL_VALUE"].base is globals()
    assert by_key["attribute"] == Origin("attr", holder, "attribute")
    assert by_key["captured"].kind == "cell" and type(by_key["captured"].base).__name__ == "cell"
    assert Origin("call", len, None) in origins


def test_on_load_substitutes_values():
    class Hooks(InterpreterHooks):
        def on_load(self, value, origin):
            if origin.kind == "global" and origin.key == "GLOBAL_VALUE":
                return 1000
            return value

    def reads():
        return GLOBAL_VALUE + 1

    assert interpret(reads, hooks=Hooks()) == 1001


def test_store_and_delete_attr_hooks_can_defer_stores():
    """A compiler defers stores to lasting objects (its epilogue replays them) and answers reads of
    attributes that exist only in its deferred record through missing_attr."""

    class Deferring(InterpreterHooks):
        def __init__(self):
            self.pending = {}

        def store_attr(self, obj, name, value):
            self.pending[name] = value

        def delete_attr(self, obj, name):
            self.pending[name] = "<deleted>"

        def missing_attr(self, obj, name):
            return self.pending.get(name, NotImplemented)

    def program(obj):
        obj.fresh = 5
        del obj.attribute
        return obj.fresh * 2, obj.attribute

    holder, hooks = Holder(), Deferring()
    assert interpret(program, (holder,), hooks=hooks) == (10, holder.attribute)
    assert hooks.pending == {"fresh": 5, "attribute": "<deleted>"}
    assert not hasattr(holder, "fresh")  # nothing stored on the real object

    def reads_missing(obj):
        return obj.nothing_here

    with pytest.raises(AttributeError, match="nothing_here"):
        interpret(reads_missing, (holder,), hooks=hooks)


def test_method_loads_pass_the_attribute_value():
    hooks = RecordingHooks()

    def calls_method(obj):
        return obj.describe()

    class Thing:
        def describe(self):
            return "thing"

    thing = Thing()
    assert interpret(calls_method, (thing,), hooks=hooks) == "thing"
    [(kind, _, value)] = [entry for entry in hooks.loads if entry[1] == "describe"]
    assert kind == "attr" and value == thing.describe


def test_lookaside_replaces_calls_and_result_is_not_loaded():
    calls = []

    def original(x):
        return ("original", x)

    class Hooks(RecordingHooks):
        def lookaside(self, fn):
            super().lookaside(fn)
            if fn is original:
                def replacement(*args, **kwargs):
                    calls.append((args, kwargs))
                    return "replaced"
                return replacement
            return None

    def program():
        return original(1), original(x=2), len("abc")

    hooks = Hooks()
    assert interpret(program, hooks=hooks) == ("replaced", "replaced", 3)
    assert calls == [((1,), {}), ((), {"x": 2})]
    assert not any(v == "replaced" for _, _, v in hooks.loads)
    assert original in hooks.lookasides and len in hooks.lookasides and program in hooks.lookasides


def test_lookaside_sees_bound_methods_and_their_functions():
    hooks = RecordingHooks()

    def program():
        return Holder().__init__()

    interpret(program, hooks=hooks)
    assert Holder in hooks.lookasides and Holder.__init__ in hooks.lookasides
    assert any(type(fn).__name__ == "method" and fn.__func__ is Holder.__init__ for fn in hooks.lookasides)


def test_should_interpret_false_calls_natively():
    def helper(x):
        return GLOBAL_VALUE + x

    class Hooks(RecordingHooks):
        def should_interpret(self, fn):
            return fn is not helper

    def program():
        return helper(1)

    hooks = Hooks()
    assert interpret(program, hooks=hooks) == GLOBAL_VALUE + 1
    assert "GLOBAL_VALUE" not in {k for _, k, _ in hooks.loads}
    assert ("call", None, GLOBAL_VALUE + 1) in hooks.loads


def test_python_code_reached_through_calls_is_interpreted():
    hooks = RecordingHooks()

    class Module:
        def __init__(self):
            self.weight = GLOBAL_VALUE

        def __call__(self, x):
            return self.forward(x)

        def forward(self, x):
            return x * self.weight + len(GLOBAL_LIST)

    def program(x):
        m = Module()
        bound = functools.partial(m, x)
        return bound() + sum(generator(3))

    assert interpret(program, (2,), hooks=hooks) == 2 * GLOBAL_VALUE + 3 + 3
    assert {"weight", "forward", "GLOBAL_LIST", "GLOBAL_VALUE"} <= {k for _, k, _ in hooks.loads}
    # the generator was advanced by sum() natively, yet its frame ran interpreted
    assert "range" in {k for _, k, _ in hooks.loads}


def test_class_bodies_are_interpreted():
    hooks = RecordingHooks()

    def program():
        class Body:
            seen = GLOBAL_VALUE
        return Body.seen

    assert interpret(program, hooks=hooks) == GLOBAL_VALUE
    assert ("global", "GLOBAL_VALUE", GLOBAL_VALUE) in hooks.loads


# =================================================================================================
# Compiler errors and error reporting
# =================================================================================================

class CompilerError(AcquisitionError):
    pass


def test_acquisition_error_is_not_caught_by_user_code():
    class Hooks(InterpreterHooks):
        def lookaside(self, fn):
            if fn is len:
                def refuse(*args):
                    raise CompilerError("no len")
                return refuse
            return None

    def program():
        try:
            return len([1])
        except Exception:
            return "caught"

    with pytest.raises(CompilerError, match="no len"):
        interpret(program, hooks=Hooks())


def test_acquisition_error_raised_natively_is_not_caught():
    def native_raiser():
        raise CompilerError("deep")

    class Hooks(InterpreterHooks):
        def should_interpret(self, fn):
            return fn is not native_raiser

    def program():
        try:
            native_raiser()
        except BaseException:
            return "caught"

    with pytest.raises(CompilerError):
        interpret(program, hooks=Hooks())


def failing_inner(x):
    y = x + 1
    raise ValueError(f"bad {y}")  # the raise line


def failing_outer(x):
    z = x * 2
    return failing_inner(z)  # the call line


def _line_of(fn, text):
    import inspect
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, line in enumerate(lines) if text in line)


def test_errors_carry_the_user_stack():
    with pytest.raises(ValueError) as info:
        interpret(failing_outer, (1,))
    exc = info.value
    frames = exc.thunder_user_frames
    assert [name for _, _, name in frames] == ["failing_outer", "failing_inner"]
    assert frames[0][1] == _line_of(failing_outer, "the call line")
    assert frames[1][1] == _line_of(failing_inner, "the raise line")
    assert all(filename == __file__ for filename, _, _ in frames)
    text = exc.__notes__[0] if PY >= (3, 11) else exc.__thunder_frames__
    assert f'File "{__file__}", line {frames[1][1]}, in failing_inner' in text
    assert "return failing_inner(z)  # the call line" in text
    assert text.count("failing_inner") == 2  # the frame line and the call's source, once
    if PY < (3, 11):
        assert "failing_inner" in str(exc)
    # the traceback shows no interpreter internals
    import traceback
    names = [frame.name for frame in traceback.extract_tb(exc.__traceback__)]
    assert names == ["test_errors_carry_the_user_stack"] + (["interpret"] if PY < (3, 11) else [])


def test_errors_from_native_code_and_hooks_carry_the_user_stack():
    class Hooks(InterpreterHooks):
        def lookaside(self, fn):
            if fn is sorted:
                def refuse(*args, **kwargs):
                    raise CompilerError("unsupported")
                return refuse
            return None

    def program(xs):
        return sorted(xs)

    with pytest.raises(CompilerError) as info:
        interpret(program, ([1],), hooks=Hooks())
    [(_, line, name)] = info.value.thunder_user_frames
    assert name == "program" and line == _line_of(program, "return sorted(xs)")

    def native_failure():
        return int("not a number")

    with pytest.raises(ValueError) as info:
        interpret(native_failure)
    assert info.value.thunder_user_frames[0][2] == "native_failure"


def test_current_user_frames_from_a_lookaside():
    seen = []

    def probe(*args):
        seen.append(interp.current_user_frames())
        return "probed"

    class Hooks(InterpreterHooks):
        def lookaside(self, fn):
            return probe if fn is print else None

    def user_inner():
        return print("x")  # probe here

    def user_outer():
        return user_inner()

    assert interp.current_user_frames() == []
    assert interpret(user_outer, hooks=Hooks()) == "probed"
    [frames] = seen
    assert [name for _, _, name in frames] == ["user_outer", "user_inner"]
    assert frames[-1] == (__file__, _line_of(user_inner, "probe here"), "user_inner")
    assert interp.current_user_frames() == []


# =================================================================================================
# Internals worth pinning down
# =================================================================================================

def test_localsplus_layout_matches_cpython():
    if PY < (3, 11):
        pytest.skip("3.10 has no localsplus")
    for fn in (closures, comprehensions, super_chains, classes, make_closure_reader()):
        code = fn.__code__
        names = interp._code_info(code).slot_names
        assert names == [code._varname_from_oparg(i) for i in range(len(names))]


def test_binary_op_table_matches_dis():
    if PY < (3, 11):
        pytest.skip("BINARY_OP is 3.11+")
    assert len(interp._BINARY_OPS) == len([op for op in dis._nb_ops if op[1] != "[]"])
    for fn, (_, symbol) in zip(interp._BINARY_OPS, dis._nb_ops):
        a, b = (Vec(1, 2), Vec(3, 4)) if "@" in symbol else (7, 3)
        namespace = {"a": a, "b": b}
        if symbol.endswith("=") and symbol not in ("==", "!="):
            exec(f"a {symbol} b", namespace)
            expected = namespace["a"]
        else:
            expected = eval(f"a {symbol} b", namespace)
        assert fn(a, b) == expected, symbol


def test_every_opcode_used_by_these_tests_is_implemented():
    import types
    missing = set()

    def visit(code):
        for inst in dis.get_instructions(code):
            if inst.opname not in interp._OPCODES:
                missing.add(inst.opname)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                visit(const)

    for value in list(globals().values()):
        if isinstance(value, types.FunctionType):
            visit(value.__code__)
    assert not missing
