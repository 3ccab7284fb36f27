"""Property-based fuzzing of every reader and of the command line (hypothesis).

Each test mutates a valid input (bytes, lines, attribute values, JSON fields, arrays) and feeds
it to the reader; the only allowed outcomes are a result that passes its own sanity checks
(finite numbers, the right shapes) or a ChronogradError. Anything else (a KeyError, a NumPy
broadcasting error, a NaN energy) fails the test. Examples are derandomized and bounded so
the default suite stays fast; cases found here that were worth keeping went into the corpus of
``tests/bad_input_corpus.py``.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from bad_input_corpus import (
    QM,
    SAGE,
    ethanol_sdf_text,
    fit_config,
    sage_text,
    system_json_text,
    water_files,
    water_xml_text,
)
from cli_helpers import run_cli, tree
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chronograd.errors import ChronogradError


def fuzz(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


NASTY = ["nan", "inf", "-inf", "1e999", "-1", "0", "", " ", "1.0 * angstrom", "1 * furlong",
         "[#6:1]", "None", "1e-300", "abc", "1.0 * kilocalorie_per_mole ** 3", "99999999999",
         "-0", "1.5", "2", "[*:1]~[*:2]", "1.0 * degree", "&amp;", "1.0 * (angstrom",
         "1 * mole ** -1 * kilocalorie ** 1", "\u00e5", "0.5 * elementary_charge"]


@st.composite
def byte_mutation(draw, text: str) -> str:
    """Delete, insert, replace or duplicate a stretch of ``text``, or cut it off."""
    n = len(text)
    op = draw(st.sampled_from(["delete", "insert", "replace", "duplicate", "truncate"]))
    i = draw(st.integers(0, max(n - 1, 0)))
    k = draw(st.integers(1, 40))
    junk = draw(st.text(st.sampled_from(list("<>\"'=&;/ \n\t#*[]:0123456789.-eEnaif")),
                        min_size=1, max_size=12))
    if op == "delete":
        return text[:i] + text[i + k:]
    if op == "insert":
        return text[:i] + junk + text[i:]
    if op == "replace":
        return text[:i] + junk + text[i + len(junk):]
    if op == "duplicate":
        return text[:i + k] + text[i:]
    return text[:i]


@st.composite
def attribute_mutation(draw, text: str, pattern=r'(\w+)="([^"]*)"') -> str:
    """Set one ``key="value"`` to a nasty value, or delete it."""
    matches = list(re.finditer(pattern, text))
    m = matches[draw(st.integers(0, len(matches) - 1))]
    if draw(st.booleans()) and draw(st.booleans()):
        return text[:m.start()] + text[m.end():]
    value = draw(st.sampled_from(NASTY))
    return text[:m.start(2)] + value + text[m.end(2):]


def mutated(text: str, **kw):
    return st.one_of(byte_mutation(text), attribute_mutation(text, **kw),
                     attribute_mutation(text, **kw).flatmap(
                         lambda t: attribute_mutation(t, **kw)))


def allowed(fn, *args, **kwargs):
    """Run ``fn``; return its result, or None for a ChronogradError; let anything else fail.
    (Outcomes are counted: ``pytest --hypothesis-show-statistics``.)"""
    name = getattr(fn, "__name__", "call")
    try:
        out = fn(*args, **kwargs)
    except ChronogradError:
        event(f"{name}: refused")
        return None
    event(f"{name}: accepted")
    return out


def finite_tree(tree_) -> bool:
    import jax

    return all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(tree_))


# ---- force fields and molecules -----------------------------------------------------------------

@pytest.fixture(scope="module")
def ethanol():
    from chronograd.topology import Molecule

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "m.sdf").write_text(ethanol_sdf_text())
        return Molecule.from_sdf(Path(d) / "m.sdf")[0]


@fuzz(40)
@given(text=mutated(sage_text()))
def test_fuzz_offxml(text, ethanol):
    from chronograd.forcefield import ForceField

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ff.offxml"
        path.write_text(text)
        ff = allowed(ForceField, path)
        if ff is None:
            return
        assert finite_tree(ff.params)
        system = allowed(ff.create_system, ethanol, charges="from-file")
        if system is not None:
            assert finite_tree(system.slots())


@st.composite
def sdf_field_mutation(draw, text: str) -> str:
    """Replace one whitespace-separated field of one line with a nasty token."""
    lines = text.splitlines()
    k = draw(st.integers(0, len(lines) - 1))
    fields = lines[k].split()
    if fields:
        j = draw(st.integers(0, len(fields) - 1))
        fields[j] = draw(st.sampled_from(NASTY + ["999", "-999", "0.0000", "V3000"]))
        lines[k] = " ".join(fields)
    else:
        lines.insert(k, draw(st.sampled_from(NASTY)))
    return "\n".join(lines) + "\n"


@fuzz(40)
@given(text=st.one_of(byte_mutation(ethanol_sdf_text()), sdf_field_mutation(ethanol_sdf_text())))
def test_fuzz_sdf(text):
    from chronograd.topology import Molecule

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "m.sdf").write_text(text)
        mols = allowed(Molecule.from_sdf, Path(d) / "m.sdf")
        if mols is None:
            return
        for mol in mols:
            assert mol.n_atoms > 0
            if mol.positions is not None:
                assert np.all(np.isfinite(mol.positions))
            charges = "from-file" if mol.partial_charges is not None else "gasteiger"
            system = allowed(_ff().create_system, mol, charges=charges)
            if system is not None and mol.positions is not None:
                assert finite_tree(system.slots())
                allowed(system.check_inputs, mol.positions)


_FF = {}


def _ff():
    from chronograd.forcefield import ForceField

    if "sage" not in _FF:
        _FF["sage"] = ForceField(SAGE)
    return _FF["sage"]




# ---- OpenMM XML and PDB: through `chronograd energy` --------------------------------------------

def _water_pdb_text() -> str:
    with tempfile.TemporaryDirectory() as d:
        water_files(Path(d))
        return (Path(d) / "water.pdb").read_text()


@fuzz(25)
@given(xml=st.one_of(st.just(None), mutated(water_xml_text())),
       pdb=st.one_of(st.just(None), byte_mutation(_water_pdb_text())))
def test_fuzz_energy_command_with_openmm_xml_and_pdb(xml, pdb):
    """Mutated OpenMM XML or PDB through the CLI: a finite energy (exit 0) or one line."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        argv = water_files(d)
        if xml is not None:
            (d / "water.xml").write_text(xml)
        if pdb is not None:
            (d / "water.pdb").write_text(pdb)
        before = tree(d)
        result = run_cli(*argv, "--json", cwd=d)
        event(f"exit code {result.code}")
        if result.code == 0:
            assert np.isfinite(json.loads(result.out)["total"])
        else:
            result.one_line_error()
            assert tree(d) == before


@fuzz(30)
@given(text=byte_mutation(_water_pdb_text()))
def test_fuzz_pdb_reader(text):
    from chronograd.interop.files import read_pdb_positions

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "x.pdb").write_text(text)
        out = allowed(read_pdb_positions, Path(d) / "x.pdb")
        if out is not None:
            pos, box = out
            assert pos.ndim == 2 and pos.shape[1] == 3 and np.all(np.isfinite(pos))


# ---- JSON: systems and QM manifests -------------------------------------------------------------

JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.sampled_from([9999, -1, 0, 1]),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5),
    st.lists(st.integers(-3, 30), max_size=4),
    st.lists(st.lists(st.integers(-3, 30), max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:6]):  # the first entries of long arrays suffice
            yield from _paths(v, (*prefix, i))


@st.composite
def json_mutation(draw, data):
    """Replace, delete or truncate one node of a JSON tree."""
    data = json.loads(json.dumps(data))
    paths = [p for p in _paths(data) if p]
    path = paths[draw(st.integers(0, len(paths) - 1))]
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    op = draw(st.sampled_from(["replace", "replace", "delete", "truncate"]))
    if op == "delete":
        del parent[path[-1]]
    elif op == "truncate" and isinstance(parent[path[-1]], list):
        parent[path[-1]] = parent[path[-1]][: draw(st.integers(0, 3))]
    else:
        parent[path[-1]] = draw(JSON_VALUES)
    return data


@pytest.fixture(scope="module")
def ethanol_positions(ethanol):
    return ethanol.positions


@fuzz(20)
@given(data=json_mutation(json.loads(system_json_text())))
def test_fuzz_system_json(data, ethanol):
    import chronograd as cg

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.json"
        path.write_text(json.dumps(data))
        system = allowed(cg.load, path)
        if system is None:
            return
        terms = allowed(system.energy_terms, ethanol.positions)
        if terms is not None:
            assert all(np.isfinite(v) for v in terms.values()), terms


def _qm_files(d: Path, meta, arrays):
    q = d / "qm"
    q.mkdir()
    (q / "manifest.json").write_text(json.dumps(meta))
    np.savez(q / "qm_data.npz", **arrays)
    return q


def _qm_base():
    meta = json.loads((QM / "manifest.json").read_text())
    meta["records"] = [r for r in meta["records"] if r["id"] == "scan-ethanol"]
    with np.load(QM / "qm_data.npz") as data:
        arrays = {k: data[k] for k in data.files if k.startswith("scan-ethanol/")}
    return meta, arrays


ARRAYS = st.one_of(
    st.sampled_from([np.zeros(0), np.full(12, np.nan), np.ones((12, 9, 3)), np.ones((2, 9, 3)),
                     np.array(["a", "b"]), np.ones((12, 9)), np.array([True, False]),
                     np.arange(9), np.ones((12, 9, 3), np.float32) * 1e30,
                     np.array(1.0)]))


@fuzz(30)
@given(meta=st.one_of(st.just(None), json_mutation(_qm_base()[0])),
       which=st.sampled_from(sorted(_qm_base()[1])), array=st.one_of(st.none(), ARRAYS))
def test_fuzz_qm_dataset(meta, which, array):
    from chronograd.fit.data import load_qm_dataset

    base_meta, arrays = _qm_base()
    if array is not None:
        arrays[which] = array
    with tempfile.TemporaryDirectory() as d:
        q = _qm_files(Path(d), base_meta if meta is None else meta, arrays)
        records = allowed(load_qm_dataset, q)
        for r in records or []:
            assert r.positions.shape[0] == r.energy.shape[0] >= 1
            assert np.all(np.isfinite(r.positions)) and np.all(np.isfinite(r.energy))


# ---- TOML configs -------------------------------------------------------------------------------

def _config_text() -> str:
    with tempfile.TemporaryDirectory() as d:
        return (Path(d) / fit_config(Path(d))).read_text()


TOML_VALUES = ['"x"', "-1", "0", "1e999", "nan", "[]", "{}", "true", '"1.0 * furlong"', "[1, 2]",
               '"../../nowhere"', '"all"', '""', "3.5"]


@st.composite
def toml_mutation(draw, text):
    lines = text.splitlines()
    k = draw(st.integers(0, len(lines) - 1))
    op = draw(st.sampled_from(["value", "value", "delete", "duplicate", "bytes"]))
    if op == "bytes":
        return draw(byte_mutation(text))
    if op == "delete":
        del lines[k]
    elif op == "duplicate":
        lines.insert(k, lines[k])
    elif "=" in lines[k]:
        lines[k] = lines[k].split("=")[0] + "= " + draw(st.sampled_from(TOML_VALUES))
    return "\n".join(lines) + "\n"


@fuzz(15)
@given(text=toml_mutation(_config_text()))
def test_fuzz_fit_config(text):
    from chronograd.fit import load_config
    from chronograd.fit.runner import _optimizer, build_objective

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "fit.toml").write_text(text)
        cfg = allowed(load_config, Path(d) / "fit.toml")
        if cfg is None:
            return
        if allowed(_optimizer, cfg) is not None:
            allowed(build_objective, cfg)
        assert tree(Path(d)) == {"fit.toml"}


# ---- checkpoints --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def md_checkpoint_bytes():
    """A real checkpoint of water in vacuum and the integrator that reads it."""
    import jax

    from chronograd.dynamics import langevin
    from chronograd.dynamics.reporters import save_checkpoint
    from chronograd.topology import Molecule

    water = Molecule.from_smiles("O")
    system = _ff().create_system(water)
    integ = langevin(system, timestep=0.001, temperature=300.0)
    state = integ.init(water.positions, key=jax.random.key(0), temperature=300.0)
    with tempfile.TemporaryDirectory() as d:
        save_checkpoint(Path(d) / "c.chk", state, integ)
        return (Path(d) / "c.chk").read_bytes(), integ


@st.composite
def archive_mutation(draw, raw: bytes):
    """Bytes of a mutated checkpoint archive: damaged bytes, or a re-written archive (valid
    checksum) whose header fields or arrays were changed."""
    import io

    from chronograd.interop.archive import write_archive

    if draw(st.booleans()):
        data = bytearray(raw)
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "truncate", "insert"]))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[i:]
        else:
            data[i:i] = b"\0" * draw(st.integers(1, 8))
        return bytes(data)
    with np.load(io.BytesIO(raw)) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays.pop("__header__").tobytes())
    header.pop("sha256")
    if draw(st.booleans()):
        header = draw(json_mutation(header))
    else:
        name = draw(st.sampled_from(sorted(arrays)))
        arrays[name] = draw(ARRAYS)
    with tempfile.TemporaryDirectory() as d:
        write_archive(Path(d) / "a.npz", header, arrays)
        return (Path(d) / "a.npz").read_bytes()


@fuzz(30)
@given(st.data())
def test_fuzz_md_checkpoint(md_checkpoint_bytes, data):
    from chronograd.dynamics.reporters import load_checkpoint

    raw, integ = md_checkpoint_bytes
    blob = data.draw(archive_mutation(raw))
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "c.chk").write_bytes(blob)
        state = allowed(load_checkpoint, Path(d) / "c.chk", integ)
        if state is not None:
            assert state.positions.shape == (integ.system.n_atoms, 3)


@pytest.fixture(scope="module")
def fit_checkpoint_bytes():
    """A checkpoint as the fit loop writes it, with an L-BFGS state after one step."""
    from chronograd.fit.checkpoint import write_fit_checkpoint
    from chronograd.fit.optimizers import lbfgs

    opt = lbfgs()
    state = opt.init(np.zeros(4))
    state.update(loss=1.0, grad=np.ones(4), parts=[1.0])
    blob = {"iteration": 1, "state": state, "log": [{"iteration": 1, "loss": 1.0}],
            "evaluations": (2, 2, 0), "wall_s": 0.5, "labels": list("abcd"),
            "target_states": {}}
    with tempfile.TemporaryDirectory() as d:
        write_fit_checkpoint(Path(d) / "c.npz", blob, config_sha256="f" * 64)
        return (Path(d) / "c.npz").read_bytes(), opt


@fuzz(30)
@given(st.data())
def test_fuzz_fit_checkpoint(fit_checkpoint_bytes, data):
    from chronograd.fit.checkpoint import open_fit_checkpoint, restore_fit_checkpoint

    raw, opt = fit_checkpoint_bytes
    blob = data.draw(archive_mutation(raw))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.npz"
        path.write_bytes(blob)
        opened = allowed(open_fit_checkpoint, path, config_sha256="f" * 64, config_path="f")
        if opened is None:
            return
        ckpt = allowed(restore_fit_checkpoint, *opened, path=path, labels=list("abcd"),
                       state_template=opt.init(np.zeros(4)), iterations=5)
        if ckpt is not None:
            assert np.asarray(ckpt["state"]["phi"]).shape == (4,)


# ---- command-line options -----------------------------------------------------------------------

GOOD = {"--timestep": "1fs", "--temperature": "300K", "--friction": "1.0", "--steps": "20",
        "--report-every": "10", "--seed": "1", "--integrator": "langevin", "-o": "run.dcd"}
BAD = {"--timestep": ["-1fs", "0", "nan", "2K", "fs", "1e999fs", "2 fs fs", ""],
       "--temperature": ["-5K", "inf", "300 bar", "K", "-0.1"],
       "--friction": ["-1", "nan", "inf", "x"],
       "--steps": ["0", "-10", "1.5", "ten", "7"],
       "--report-every": ["0", "-10", "3", "x"],
       "--seed": ["-1", "4294967296", "x"],
       "--integrator": ["leapfrog", "", "LANGEVIN"],
       "-o": ["run.txt", "missing/run.dcd", ".", "run"],
       "--pressure": ["-1bar", "1bar", "1 K", "nan"],
       "--density": ["0", "-1", "nan"]}


@fuzz(25)
@given(option=st.sampled_from(sorted(BAD)), data=st.data())
def test_fuzz_simulate_options(option, data):
    """One bad option among good ones: exit code 1 or 2, one line, nothing written."""
    value = data.draw(st.sampled_from(BAD[option]))
    args = dict(GOOD, **{option: value})
    argv = ["simulate", "--ff", SAGE, "--smiles", "O"]
    if option == "--density":
        argv += ["--liquid", "4"]
    for key, v in args.items():
        argv += [key, v]
    with tempfile.TemporaryDirectory() as d:
        result = run_cli(*argv, cwd=Path(d))
        assert result.code in (1, 2), (argv, result.out)
        result.one_line_error()
        assert tree(Path(d)) == set()


# ---- QM importers and OpenMM custom-force expressions ---------------------------------------

def _qm_fixture_texts():
    """(QCSchema AtomicResult JSON, torsiondrive state JSON, XYZ) of ethanol, valid."""
    from test_qm_import import ETHANOL, _atomic_result, _conformer

    from chronograd.units import BOHR

    x, sym = _conformer(seed=1)
    qcschema = json.dumps(_atomic_result(x, sym, -154.9, np.full(x.shape, 0.001)))
    coords = (x * 0.1 / BOHR).ravel().tolist()
    td = json.dumps({"dihedrals": [[0, 1, 2, 8]], "grid_spacing": [180], "elements": sym,
                     "init_coords": [coords], "grid_status": {"60": [[coords, coords, -1.0]]}})
    xyz = "9\nenergy=-154.9\n" + "\n".join(
        f"{s} {p[0]:.5f} {p[1]:.5f} {p[2]:.5f}" for s, p in zip(sym, x, strict=True)) + "\n"
    return ETHANOL, qcschema, td, xyz


QM_TEXTS = _qm_fixture_texts()
JSON_VALUE = r'("[^"]*"|-?\d[\d.eE+-]*|true|false|null)'


@fuzz(40)
@given(which=st.sampled_from([1, 2, 3]), data=st.data())
def test_fuzz_qm_importers(which, data):
    from chronograd.fit.qm_import import read_qcschema, read_torsiondrive, read_xyz

    smiles, text = QM_TEXTS[0], QM_TEXTS[which]
    pattern = rf"(){JSON_VALUE}" if which < 3 else r"(\w+)=(\S+)"  # any JSON scalar
    text = data.draw(st.one_of(byte_mutation(text),
                               attribute_mutation(text, pattern=pattern)))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ("in.json" if which < 3 else "in.xyz")
        path.write_text(text)
        reader = {1: lambda: read_qcschema([path]),
                  2: lambda: read_torsiondrive(path, mapped_smiles=smiles),
                  3: lambda: read_xyz(path, mapped_smiles=smiles)}[which]
        rec = allowed(reader)
        if rec is not None:
            assert np.all(np.isfinite(rec.positions)) and np.all(np.isfinite(rec.energy))
            assert rec.positions.shape[1:] == (9, 3) and len(rec.energy) == len(rec.positions)


@fuzz(60)
@given(tokens=st.lists(st.sampled_from(list("rxk01.^*/+-(),; =_") + [
    "sqrt", "exp", "step", "select", "min", "lambda", "__import__", "os", "bessel", " "]),
    min_size=1, max_size=20))
def test_fuzz_custom_force_expressions(tokens):
    """Any text: a sympy expression or a named refusal, never another exception (and never
    code: every name is renamed before sympy reads it)."""
    from chronograd.potentials.expressions import parse

    allowed(parse, "".join(tokens), "fuzz")
