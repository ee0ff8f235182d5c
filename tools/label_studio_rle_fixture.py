"""Make tests/support/label_studio_rle.json: brush RLEs encoded by Label Studio's own encoders.

Label Studio's SDK (label-studio-sdk) pulls in pandas, nltk, lxml and a pinned OpenCV, too heavy for
refine's test dependencies, so refine decodes the published rle-pack format itself and its tests decode
streams that the real encoders made, stored in that small JSON file. This script made it, once:
  - `label_studio_sdk.converter.brush.mask2rle` (the SDK's encoder: every mask value repeated as R, G, B, A,
    how ML backends and pre-annotation scripts write brushes);
  - `@thi.ng/rle-pack`'s `encode` (what the Label Studio editor calls on the canvas RGBA data), for a
    mask in the editor's form (R = G = B = A) and for a coloured RGBA image (0, 255, 0, 100), whose
    unequal neighbours make rle-pack write literal chunks.
The masks come from `tests/support/custom_exports.painted` (seeds 30 and 31, classes 1 and 2), so the test
knows every pixel without this script.
Usage (a Python that has label-studio-sdk, and node with @thi.ng/rle-pack installed in NODE_MODULES):
  python tools/label_studio_rle_fixture.py --node-modules /path/to/node_modules [--out tests/support/...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.custom_exports import painted  # noqa: E402

MASKS = {"seed30_class1": (30, 1), "seed30_class2": (30, 2), "seed31_class1": (31, 1)}
_NODE = """
import { encode } from "@thi.ng/rle-pack";
import { readFileSync } from "fs";
const data = Uint8Array.from(JSON.parse(readFileSync(0, "utf8")));
process.stdout.write(JSON.stringify(Array.from(encode(data, data.length))));
"""


def rle_pack(values: np.ndarray, node_modules: Path) -> list[int]:
    script = node_modules.parent / "refine_rle_fixture.mjs"
    script.write_text(_NODE, encoding="utf-8")
    try:
        done = subprocess.run(["node", str(script)], input=json.dumps(values.tolist()), capture_output=True,
                              text=True, check=True, cwd=node_modules.parent)  # fmt: skip
    finally:
        script.unlink()
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--node-modules", type=Path, required=True, help="a node_modules with @thi.ng/rle-pack")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "support" / "label_studio_rle.json")
    args = parser.parse_args()
    from label_studio_sdk.converter import brush

    fixture: dict[str, dict[str, object]] = {"sdk": {}, "rle_pack": {}, "rle_pack_rgba": {}}
    for name, (seed, cls) in MASKS.items():
        mask = np.where(painted(seed) == cls, 255, 0).astype(np.uint8)
        fixture["sdk"][name] = [int(v) for v in brush.mask2rle(mask)]
        fixture["rle_pack"][name] = rle_pack(np.repeat(mask.ravel(), 4), args.node_modules)
        rgba = np.zeros((*mask.shape, 4), dtype=np.uint8)
        rgba[mask > 0] = (0, 255, 0, 100)
        fixture["rle_pack_rgba"][name] = rle_pack(rgba.ravel(), args.node_modules)
    import label_studio_sdk

    package = json.loads((args.node_modules / "@thi.ng/rle-pack/package.json").read_text(encoding="utf-8"))
    sdk_version = getattr(label_studio_sdk, "__version__", "?")
    fixture["made_by"] = {"label-studio-sdk": sdk_version, "rle-pack": package["version"]}
    args.out.write_text(json.dumps(fixture, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
