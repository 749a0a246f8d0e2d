"""Recompute golden_seed11.json by running the official MPI-INF-3DHP MATLAB test script under GNU Octave.

Writes case_seed11.npz as the official test layout (``TSk/annot_data.mat``, MATLAB v5) plus the
``inference_data.mat`` that the official ``mpii_test_predictions_py.m`` loads, runs that script unmodified
(it ends in MATLAB's ``writetable``/``cell2table``, absent from Octave: stubbed) and reads the 'All' rows
of its ``activity_table`` (MPJPE average, PCK Total, AUC Total)::

    C=008036a66048e2dcb6fcf8d5b05a705ad1d2f392; G=/work/.mirror/QitaoZhao+PoseFormerV2/repo
    P=/tmp/provenance/PoseFormerV2
    for f in $(git --git-dir=$G ls-tree -r --name-only $C mpi_inf_3dhp/3dhp_test/test_util); do
        mkdir -p $P/$(dirname $f); git --git-dir=$G show $C:$f > $P/$f
    done
    .nox/posearena/bin/python tests/data/mpi_inf_3dhp_golden/gen_golden.py \
        --test-util $P/mpi_inf_3dhp/3dhp_test/test_util --out /tmp/provenance/3dhp.json

``all17`` reruns it with the 17-joint ``mpii_get_pck_auc_joint_groups`` groups named in golden_seed11.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEQS = [f"TS{k}" for k in range(1, 7)]
# the 17-joint mpii_get_pck_auc_joint_groups.m: the groups golden_seed11.json's all17_note names
GROUPS_17 = """function [joint_groups] = mpii_get_pck_auc_joint_groups()
joint_groups = {'Head', [1,17]; 'Neck', [2]; 'Shou', [3,6]; 'Elbow', [4,7]; 'Wrist', [5,8]; 'spine', [16];
                'Hip', [9,12,15]; 'Knee', [10,13]; 'Ankle', [11,14]};
end
"""
DRIVER = """more off; addpath('{stubs}'); addpath('{util}'); {groups}
cd('{cwd}'); mpii_test_predictions_py;
rows = find(strcmp(activity_table(:, 1), 'All'));  % MPJPE, PCK, AUC; each row's last filled cell is its total
last = @(r) activity_table{{r, find(~cellfun(@isempty, activity_table(r, :)), 1, 'last')}};
printf('RESULT %.17g %.17g %.17g\\n', last(rows(1)), last(rows(2)), last(rows(3)));
"""


def write_case(root: Path) -> None:
    """``root/TSk/annot_data.mat`` and ``root/a/b/..\\..\\checkpoint\\inference_data.mat`` (the literal
    file name the script loads from its working directory ``root/a/b``; its data path is ``../TSk``)."""
    import numpy as np
    import scipy.io

    data = np.load(HERE / "case_seed11.npz")
    preds = {}
    for s in SEQS:
        univ, valid = data[f"{s}/univ"], data[f"{s}/valid"]
        (root / "a" / s).mkdir(parents=True)
        scipy.io.savemat(root / "a" / s / "annot_data.mat", {
            "univ_annot3": univ[:, None].transpose(3, 2, 1, 0), "annot2": np.zeros((2, 17, 1, len(univ))),
            "valid_frame": valid[:, None], "activity_annotation": data[f"{s}/activity"][:, None]})
        preds[s] = (data[f"{s}/pred_m"][valid > 0] * 1000)[:, None].transpose(3, 2, 1, 0)
    (root / "a" / "b").mkdir()
    scipy.io.savemat(root / "a" / "b" / "..\\..\\checkpoint\\inference_data.mat", preds)


def run_octave(util: Path, root: Path, groups17: bool) -> dict[str, float]:
    stubs = root / "stubs"
    stubs.mkdir(exist_ok=True)
    (stubs / "cell2table.m").write_text("function t = cell2table(c)\nt = c;\nend\n")
    (stubs / "writetable.m").write_text("function writetable(varargin)\nend\n")
    groups = ""
    if groups17:
        (root / "groups17").mkdir(exist_ok=True)
        (root / "groups17" / "mpii_get_pck_auc_joint_groups.m").write_text(GROUPS_17)
        groups = f"addpath('{root / 'groups17'}');"
    script = DRIVER.format(stubs=stubs, util=util, groups=groups, cwd=root / "a" / "b")
    out = subprocess.run(["octave", "--no-gui", "--quiet", "--eval", script], capture_output=True, text=True,
                         check=True).stdout
    mpjpe, pck, auc = (float(x) for x in out.split("RESULT ")[-1].split())
    return {"MPJPE_mm": mpjpe, "PCK_percent": pck, "AUC_percent": auc}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test-util", type=Path, required=True, help="the official test_util folder")
    ap.add_argument("--out", type=Path, required=True, help="JSON with the recomputed numbers")
    args = ap.parse_args()
    version = subprocess.run(["octave", "--version"], capture_output=True, text=True, check=True).stdout
    print(version.splitlines()[0], file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        write_case(Path(tmp))
        util = args.test_util.resolve()
        got = {j: run_octave(util, Path(tmp), j == "all17") for j in ("official14", "all17")}
    args.out.write_text(json.dumps(got, indent=1))
    want = json.loads((HERE / "golden_seed11.json").read_text())
    differ = [f"{j}/{k}: committed {want[j][k]!r} recomputed {v!r}" for j in got for k, v in got[j].items()
              if v != want[j][k]]
    print("\n".join(differ) or "all six numbers equal the committed ones", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
