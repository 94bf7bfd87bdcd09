"""The SigmaHQ Windows rules over EVTX-ATTACK-SAMPLES (skipped when ../shared/data is absent):
each sample whose path names a technique is flagged with that ATT&CK technique, and not with
the techniques of unrelated samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from threatscope.detect import run_detect
from threatscope.ingest import ingest_paths
from threatscope.workspace import Workspace

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SAMPLES = DATA / "evtx" / "EVTX-ATTACK-SAMPLES"
WINDOWS_RULES = DATA / "sigma" / "rules" / "windows"

# sample (tactic folder / file) -> techniques its name says it shows
EXPECTED = {
    "Execution/exec_sysmon_lobin_regsvr32_sct.evtx": {"T1218.010"},  # regsvr32 + scriptlet
    "Execution/Sysmon_Exec_CompiledHTML.evtx": {"T1218.001"},  # compiled HTML (hh.exe)
    "Execution/exec_msxsl_xsl_sysmon_1_7.evtx": {"T1220"},  # XSL script processing
    "Credential Access/sysmon_10_1_memdump_comsvcs_minidump.evtx": {"T1003.001"},  # LSASS
    "Credential Access/sysmon_10_lsass_mimikatz_sekurlsa_logonpasswords.evtx": {"T1003.001"},
    # a PowerShell script block (4104) that dumps LSASS: a SigmaHQ PowerShell rule flags it
    "Credential Access/Powershell_4104_MiniDumpWriteDump_Lsass.evtx": {"T1003.001", "T1059.001"},
    "Credential Access/CA_DCSync_4662.evtx": {"T1003.006"},  # DCSync
    "Lateral Movement/LM_PowershellRemoting_sysmon_1_wsmprovhost.evtx": {"T1021.006"},  # WinRM
    "Credential Access/babyshark_mimikatz_powershell.evtx": {"T1059.001"},
}
# techniques a sample must not be flagged with (what other samples show)
NOT_EXPECTED = {
    "Execution/exec_msxsl_xsl_sysmon_1_7.evtx": {"T1003.001", "T1003.006", "T1021.006"},
    "Credential Access/CA_DCSync_4662.evtx": {"T1003.001", "T1218.010", "T1220"},
    "Execution/exec_sysmon_lobin_regsvr32_sct.evtx": {"T1003.006", "T1003.001"},
}


@pytest.mark.skipif(not SAMPLES.is_dir() or not WINDOWS_RULES.is_dir(),
                    reason="no ../shared/data/evtx or sigma")
def test_samples_are_flagged_with_the_technique_their_path_names(tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    summary = ingest_paths(ws, [str(SAMPLES / f) for f in EXPECTED], org="lab")
    assert not summary.errors and summary.rows_written > 0
    run_detect(ws, [WINDOWS_RULES])
    with ws.connect() as con:
        found = {
            f: set(t) for f, t in con.execute(
                "SELECT source_file, list(DISTINCT t) FROM "
                "(SELECT source_file, unnest(attack_techniques) AS t FROM detection) GROUP BY 1"
            ).fetchall()
        }
    by_sample = {f: set() for f in EXPECTED}
    for path, techniques in found.items():
        for f in EXPECTED:
            if path.endswith(f):
                by_sample[f] |= techniques
    missing = {f: sorted(want - by_sample[f]) for f, want in EXPECTED.items()
               if want - by_sample[f]}
    assert missing == {}
    wrong = {f: sorted(bad & by_sample[f]) for f, bad in NOT_EXPECTED.items()
             if bad & by_sample[f]}
    assert wrong == {}
