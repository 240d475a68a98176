"""The layers of DESIGN.md, read off the code: control only goes down.

Every module of xensm_driver is parsed (never imported) and its imports and
calls are held against the layer map:

    cmd/ > service/ > driver.py, interface.py > backends/<family>/ > flows/
    > xapi/, arrays/ > exception, identity, config, opts

and sim/ on its own; above the back ends, only the Backend's interface (no
xapi/ import, no ``.storage`` or ``.pool``; driver.py wires them in do_setup).
A rule broken names the module, the line and the rule.
"""

from __future__ import annotations

import ast
import pathlib

import testtools

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "xensm_driver"

#: Rank of each top-level part; a module imports only its own rank or lower.
RANK = {
    "exception": 0, "identity": 0, "config": 0, "opts": 0, "coordination": 0,
    "__init__": 0,
    "xapi": 1, "arrays": 1,
    "flows": 2,
    "backends": 3,
    "driver": 4, "interface": 4,
    "service": 5,
    "cmd": 6,
}

#: Attribute calls that are XAPI round trips (SessionPool's API).
XAPI_CALLS = {"call", "call_async", "wait_task"}


def modules() -> list[tuple[str, ast.Module]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        found.append((".".join(rel.parts), ast.parse(path.read_text(), str(path))))
    return found


def part(dotted: str) -> str:
    """``backends.sm.flows`` -> ``backends``; ``driver`` -> ``driver``."""
    return dotted.split(".")[0]


def family(dotted: str) -> str | None:
    """``backends.sm.flows`` -> ``sm``; None outside a family package
    (``backends.base`` is every family's)."""
    parts = dotted.split(".")
    if parts[0] == "backends" and len(parts) > 1 and parts[1] != "base":
        return parts[1]
    return None


def imports(tree: ast.Module) -> list[tuple[int, str]]:
    """``(line, module inside xensm_driver)`` for each import of the package,
    ``TYPE_CHECKING`` ones included (a type names a layer too)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "xensm_driver":
                found += [(node.lineno, a.name) for a in node.names]
            elif node.module.startswith("xensm_driver."):
                base = node.module[len("xensm_driver."):]
                found += [(node.lineno, "%s.%s" % (base, a.name)) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name[len("xensm_driver."):]) for a in node.names
                      if a.name.startswith("xensm_driver.")]
    return found


def receiver(node: ast.expr) -> str:
    """The last name of a call's receiver: ``self.pool`` -> ``pool``."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


Modules = list[tuple[str, ast.Module]]


def upward_imports(mods: Modules) -> list[str]:
    broken = []
    for name, tree in mods:
        if part(name) == "sim":
            continue
        for line, target in imports(tree):
            if part(target) != "sim" and RANK[part(target)] > RANK[part(name)]:
                broken.append("%s:%d imports %s, a higher layer" % (name, line, target))
    return broken


def cross_family_imports(mods: Modules) -> list[str]:
    broken = []
    for name, tree in mods:
        for line, target in imports(tree):
            theirs = family(target)
            if theirs and theirs != family(name):
                broken.append("%s:%d imports %s" % (name, line, target))
    return broken


def sim_breaches(mods: Modules) -> list[str]:
    broken = []
    for name, tree in mods:
        for line, target in imports(tree):
            if part(name) == "sim" and part(target) != "sim":
                broken.append("%s:%d imports %s" % (name, line, target))
            if part(target) == "sim" and part(name) != "sim" and name != "cmd.sim":
                broken.append("%s:%d imports %s" % (name, line, target))
    return broken


def xapi_calls_outside_xapi(mods: Modules) -> list[str]:
    broken = []
    for name, tree in mods:
        if part(name) in ("xapi", "sim"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "XenAPI" for a in node.names):
                broken.append("%s:%d imports XenAPI" % (name, node.lineno))
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in XAPI_CALLS
                    and receiver(node.func.value) in ("pool", "session", "xenapi")):
                broken.append("%s:%d calls %s.%s" % (
                    name, node.lineno, receiver(node.func.value), node.func.attr))
    return broken


def tasks_on_backends(mods: Modules) -> list[str]:
    broken = []
    for name, tree in mods:
        if not (part(name) == "flows" or name.endswith(".flows")):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if any(a.arg == "backend" for a in node.args.args + node.args.kwonlyargs):
                    broken.append("%s:%d %s takes a backend" % (name, node.lineno, node.name))
            if isinstance(node, ast.Name) and node.id.endswith("Backend"):
                broken.append("%s:%d names %s" % (name, node.lineno, node.id))
    return broken


#: Modules above the back ends: they hold a Backend and use only its public
#: interface (backends/base.py), never the XAPI plumbing under it.
ABOVE_BACKENDS = ("service", "cmd", "driver", "interface")

#: What driver.py may import from xapi/: the wiring of do_setup, which makes
#: the SessionPool and the Storage over it that the back end is built on.
#: Wiring is not use: the pool's calls are caught by xapi_calls_outside_xapi,
#: and the data path (xapi.transfer) cannot be imported.
WIRING = {"driver": frozenset({"xapi.session.SessionPool", "xapi.storage.Storage"})}

#: Attributes that reach under a Backend (or a driver) to its XAPI plumbing.
PLUMBING = frozenset({"storage", "pool"})


def _foreign_names(tree: ast.Module) -> set[str]:
    """Names bound by imports of other packages (``sa`` for sqlalchemy): their
    ``.pool`` is theirs, not a back end's."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names
                      if not a.name.startswith("xensm_driver")}
        elif isinstance(node, ast.ImportFrom) and not (node.module or "").startswith(
                "xensm_driver"):
            names |= {a.asname or a.name for a in node.names}
    return names


def _names(node: ast.expr) -> set[str]:
    """Every name and attribute in an expression: ``drv.backend`` -> both."""
    return {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(node)
            if isinstance(n, (ast.Name, ast.Attribute))}


def _probe(node: ast.AST) -> str | None:
    """``getattr`` or ``hasattr`` when ``node`` asks it of a back end or a
    driver (``getattr(drv.backend, "sr_uuid", None)``): a Backend declares
    what it has, and nobody asks."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr") and node.args
            and any(n.endswith("backend") or n in ("drv", "driver")
                    for n in _names(node.args[0]))):
        return node.func.id
    return None


def plumbing_above_backends(mods: Modules) -> list[str]:
    """service/, cmd/, driver.py and interface.py import nothing from xapi/
    (driver.py: only its WIRING), touch no ``.storage`` or ``.pool`` --
    but driver.py's own ``self.pool``, the SessionPool it makes in do_setup
    and closes in close() -- and probe no back end with getattr/hasattr."""
    broken = []
    for name, tree in mods:
        if part(name) not in ABOVE_BACKENDS:
            continue
        for node in ast.walk(tree):
            probe = _probe(node)
            if probe:
                broken.append("%s:%d probes a back end with %s: declare it on "
                              "base.Backend" % (name, getattr(node, "lineno", 0), probe))
        allowed = WIRING.get(name, frozenset())
        for line, target in imports(tree):
            if part(target) == "xapi" and target not in allowed:
                broken.append("%s:%d imports %s: use the Backend's interface" % (
                    name, line, target))
        foreign = _foreign_names(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr in PLUMBING):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and (
                    owner.id in foreign
                    or (name == "driver" and owner.id == "self" and node.attr == "pool")):
                continue
            broken.append("%s:%d touches .%s: use the Backend's interface" % (
                name, node.lineno, node.attr))
    return broken


RULES = (upward_imports, cross_family_imports, sim_breaches, xapi_calls_outside_xapi,
         tasks_on_backends, plumbing_above_backends)


class LayersTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.modules = modules()
        self.assertGreater(len(self.modules), 40)       # the walk found the code

    def test_nothing_imports_upward(self) -> None:
        self.assertEqual([], upward_imports(self.modules))

    def test_a_family_imports_no_other_family(self) -> None:
        self.assertEqual([], cross_family_imports(self.modules))

    def test_sim_imports_nothing_of_the_driver_and_only_cmd_sim_imports_sim(self) -> None:
        self.assertEqual([], sim_breaches(self.modules))

    def test_xapi_is_called_only_inside_xapi(self) -> None:
        self.assertEqual([], xapi_calls_outside_xapi(self.modules))

    def test_tasks_act_on_a_target_never_on_a_backend(self) -> None:
        self.assertEqual([], tasks_on_backends(self.modules))

    def test_above_the_backends_only_the_backend_interface(self) -> None:
        self.assertEqual([], plumbing_above_backends(self.modules))

    def test_each_rule_reports_a_module_that_breaks_it(self) -> None:
        # The tests above cannot pass by reading nothing.
        def mod(name: str, code: str) -> tuple[str, ast.Module]:
            return name, ast.parse(code)

        breakers = {
            upward_imports: mod("flows.vdi", "from xensm_driver.backends import base\n"),
            cross_family_imports: mod("backends.sm.flows",
                                      "from xensm_driver.backends.solidfire import array\n"),
            sim_breaches: mod("sim.api", "from xensm_driver import identity\n"),
            xapi_calls_outside_xapi: mod("service.manager",
                                         "drv.pool.call('VDI.destroy', ref)\n"),
            tasks_on_backends: mod("backends.sm.flows",
                                   "class T:\n    def execute(self, backend): pass\n"),
            plumbing_above_backends: mod("service.manager",
                                         "drv.backend.storage.destroy_vdi(ref)\n"),
        }
        self.assertEqual(set(RULES), set(breakers))
        for rule, broken in breakers.items():
            self.assertEqual(1, len(rule([broken])), rule.__name__)
        self.assertEqual([], sim_breaches([mod("cmd.sim", "from xensm_driver.sim import api\n")]))

    def test_plumbing_rule_allows_only_the_drivers_wiring(self) -> None:
        def broken(name: str, code: str) -> list[str]:
            return plumbing_above_backends([(name, ast.parse(code))])

        # Each way round the Backend's interface, in each module above it.
        for name in ("service.manager", "cmd.xensm", "driver"):
            for code in ("from xensm_driver.xapi import transfer\n",
                         "from xensm_driver.xapi.transfer import upload\n",
                         "import xensm_driver.xapi.storage\n",
                         "from xensm_driver.xapi.storage import VDI\n",
                         "transfer.upload(drv.pool, uuid, chunks)\n",
                         "self.backend.storage.vdi_by_uuid(uuid)\n",
                         "backend.storage.pool\n",
                         "pool = self.driver(name).pool\n",
                         "getattr(drv.backend, 'sr_uuid', None)\n",
                         "hasattr(backend, 'holdings')\n"):
                self.assertNotEqual([], broken(name, code), (name, code))
        self.assertEqual(2, len(broken("service.backup", "self.storage = storage\n"
                                                          "self.pool = pool\n")))
        # driver.py wires the back end: its own pool, and a Storage over it.
        wiring = ("from xensm_driver.xapi.session import SessionPool\n"
                  "from xensm_driver.xapi.storage import Storage\n"
                  "self.pool = SessionPool(url)\n"
                  "backend = cls(options, Storage(self.pool))\n"
                  "self.pool.close()\n")
        self.assertEqual([], broken("driver", wiring))
        self.assertEqual(5, len(broken("service.manager", wiring)))
        # Another package's .pool (sqlalchemy's) is not a back end's, and
        # probing what is not a back end is no concern of this rule.
        self.assertEqual([], broken("service.inventory",
                                    "import sqlalchemy as sa\nsa.pool.NullPool\n"
                                    "hasattr(sink, 'write')\ngetattr(args, 'name', None)\n"))
