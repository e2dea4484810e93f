"""``qhead export CHECKPOINT``: the trained circuit as OpenQASM 2.0.

Without ``--image``: the ansatz with its trained angles (no state preparation, no
measurement). With ``--image FILE``: the full circuit for that image — the Möttönen
preparation of its encoded feature map, the ansatz, and measurements of the measured
wires — with qhead's exact ⟨Z⟩ for it in the header, to check a device's or another
simulator's result against.

Examples::

    qhead export runs/busi-q/last.pt --out ansatz.qasm
    qhead export runs/busi-q/last.pt --image scan.png --out scan.qasm
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["export_checkpoint", "register", "run"]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="the trained quantum circuit as OpenQASM 2.0 (optionally for one image)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="best.pt / last.pt of a quantum-head run")
    parser.add_argument("--image", help="export the full circuit for this image file")
    parser.add_argument("--out", help="file to write (default: print)")
    return parser


def export_checkpoint(checkpoint: str | Path, image: str | Path | None = None) -> str:
    """OpenQASM 2.0 text of a checkpoint's circuit (see :func:`circuit_to_qasm`).

    Raises:
        CheckpointError, ConfigError (no quantum head), DataError (unreadable image),
        ExportError (a gate OpenQASM 2.0 cannot express).
    """
    import torch

    from qhead.data import load_image
    from qhead.data.prepare import crop_bottom_for
    from qhead.engine import load_checkpoint
    from qhead.experiments.hardware import find_circuit
    from qhead.quantum.qasm import circuit_to_qasm

    loaded = load_checkpoint(checkpoint)
    circuit = find_circuit(loaded.model, f"checkpoint {checkpoint} (head "
                                         f"{loaded.config.model.head!r})")
    header = (f"checkpoint: {checkpoint} (epoch {loaded.epoch}); {circuit.ansatz.name} "
              f"D={circuit.layers}, {circuit.n_qubits} qubits, measured wires "
              f"{list(circuit.measured_wires)}")
    features = None
    if image is not None:
        cfg = loaded.config
        pixels = load_image(image, cfg.model.image_size, cfg.data.normalize,
                            crop_bottom=crop_bottom_for(cfg.data.name))
        model = loaded.model.double()
        with torch.no_grad():
            features = model.forward_features(pixels[None].double())
            z = circuit(features)[0]
        header += (f"\nimage: {image}\nqhead exact <Z> of the measured wires: "
                   + " ".join(f"{v:.10f}" for v in z.tolist()))
    return circuit_to_qasm(circuit.ops, circuit.weights, circuit.n_qubits,
                           circuit.measured_wires, features=features, comment=header)


def run(args: argparse.Namespace) -> int:
    text = export_checkpoint(args.checkpoint, args.image)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        lines = text.count("\n")
        print(f"wrote {args.out} (OpenQASM 2.0, {lines:,} lines)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
