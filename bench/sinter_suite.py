"""sinter's own decoder tests, with qecd's decoders added to their decoder lists.

``qecd bench sinter-suite DIR [--run]`` copies four test modules of the installed
sinter (``_decoding_test.py``, ``_predict_test.py``, ``_collection/_collection_test.py``,
``_command/_main_collect_test.py``) into ``DIR`` (a scratch directory: nothing of sinter's is
kept in this repository) and edits the copies so that every test written for ``pymatching``
also runs for each name of :data:`QECD_NAMES` (through the table of
:func:`qecd.decoder.sinter_plugin.sinter_decoders`, or ``--custom_decoders_module_function``
on sinter's command line), and ``_decoding_test.py`` gets them through sinter's own
``SINTER_PYTEST_CUSTOM_DECODERS`` hook. ``--run`` then runs pytest there and counts the
cases: passed, failed, and refused by design (a window decoder given a DEM whose detectors
carry no time coordinates, which it refuses with a ``DecoderError`` saying so).

Example
-------
>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> sorted(os.listdir(write_suite(d)))  # doctest: +NORMALIZE_WHITESPACE
['collection_test.py', 'conftest.py', 'decoding_test.py', 'main_collect_test.py',
 'predict_test.py', 'qecd_hook.py']
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
from collections.abc import Callable

#: The qecd names added to sinter's decoder lists: every backend, whole shot and windowed.
QECD_NAMES = ["qecd-pymatching", "qecd-uf", "qecd-bp-cluster", "qecd-pymatching-w4c2",
              "qecd-uf-w4c2", "qecd-bp-cluster-w2c1"]
#: The text of the refusal by design (see :class:`qecd.decoder.sinter_plugin.QecdSinterDecoder`).
REFUSAL = "sliding windows need every detector to carry a time coordinate"


def _header() -> str:
    return ("\nfrom qecd.decoder.sinter_plugin import sinter_decoders as _qecd_sinter_decoders\n"
            "QECD_TABLE = _qecd_sinter_decoders()\n"
            f"DECODERS_UNDER_TEST = ['pymatching'] + {QECD_NAMES!r}\n")


def _add_qecd(text: str, edit: Callable[[str], str]) -> str:
    """Parametrize every top-level test that names 'pymatching' over the decoders under test."""
    out = []
    for part in re.split(r"(?m)^(?=def test_|@pytest)", text):
        m = re.match(r"def (test_\w+)\((.*?)\):", part)
        if m and re.search(r"""(['"])pymatching\1""", part):
            args = m.group(2).strip()
            part = part.replace(
                m.group(0), f"def {m.group(1)}({args + ', ' if args else ''}decoder_under_test):",
                1)
            part = edit(re.sub(r"""(['"])pymatching\1""", "decoder_under_test", part))
            part = "@pytest.mark.parametrize('decoder_under_test', DECODERS_UNDER_TEST)\n" + part
        out.append(part)
    return "".join(out)


def write_suite(out_dir: str | pathlib.Path) -> pathlib.Path:
    """Write the edited copies and a conftest into ``out_dir``; returns it."""
    import sinter

    src = pathlib.Path(sinter.__file__).parent
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "qecd_hook.py").write_text(
        "from qecd.decoder.sinter_plugin import sinter_decoders\n"
        f"NAMES = {QECD_NAMES!r}\n"
        "def decoders():\n    t = sinter_decoders()\n    return {n: t[n] for n in NAMES}\n")
    (out / "conftest.py").write_text(
        "import os, sys\nsys.path.insert(0, os.path.dirname(__file__))\n"
        "os.environ['SINTER_PYTEST_CUSTOM_DECODERS'] = 'qecd_hook:decoders'\n")
    t = (src / "_decoding/_decoding_test.py").read_text()
    # its failure test looks up built-in decoders only; look up the custom ones too
    t = t.replace("decoder_obj = BUILT_IN_DECODERS.get(decoder)",
                  "decoder_obj = BUILT_IN_DECODERS.get(decoder) or TEST_CUSTOM_DECODERS.get("
                  "decoder)")
    (out / "decoding_test.py").write_text(t)
    t = (src / "_predict_test.py").read_text()
    t = t.replace("import sinter\n", "import sinter\nimport pytest\n" + _header(), 1)
    (out / "predict_test.py").write_text(_add_qecd(t, lambda p: p.replace(
        "decoder=decoder_under_test,",
        "decoder=decoder_under_test, custom_decoders=QECD_TABLE,")))
    t = (src / "_collection/_collection_test.py").read_text()
    t = t.replace("import stim\n", "import stim\n" + _header(), 1)
    (out / "collection_test.py").write_text(_add_qecd(t, lambda p: re.sub(
        r"sinter\.(iter_collect|collect)\(", r"sinter.\1(custom_decoders=QECD_TABLE, ", p)))
    t = (src / "_command/_main_collect_test.py").read_text()
    t = t.replace("import sinter\n", "import sinter\n" + _header(), 1)
    (out / "main_collect_test.py").write_text(_add_qecd(t, lambda p: p.replace(
        '"collect",', '"collect", "--custom_decoders_module_function", '
                      '"qecd.decoder.sinter_plugin:sinter_decoders",')))
    return out


def count_outcomes(junit_xml: str | pathlib.Path) -> dict[str, int]:
    """``{"passed", "failed", "refused_by_design", "skipped"}`` from pytest's JUnit XML."""
    import xml.etree.ElementTree as ET

    counts = {"passed": 0, "failed": 0, "refused_by_design": 0, "skipped": 0}
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if case.find("skipped") is not None:
            counts["skipped"] += 1
        elif bad is None:
            counts["passed"] += 1
        elif REFUSAL in (bad.get("message", "") + (bad.text or "")):
            counts["refused_by_design"] += 1
        else:
            counts["failed"] += 1
    return counts


def command(a) -> int:
    """``qecd bench sinter-suite DIR [--run]``."""
    out = write_suite(a.dir)
    print(f"wrote sinter's decoder tests with {', '.join(QECD_NAMES)} added into {out}")
    if not a.run:
        return 0
    xml = out / "junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "--timeout", "300", f"--junitxml={xml}", str(out)], cwd=out, check=False)
    c = count_outcomes(xml)
    print(f"{sum(c.values())} cases: {c['passed']} passed, {c['failed']} failed, "
          f"{c['refused_by_design']} refused by design (window decoders without detector time "
          f"coordinates), {c['skipped']} skipped by sinter")
    return 1 if c["failed"] else 0

