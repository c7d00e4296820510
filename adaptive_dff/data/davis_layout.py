"""Generated object video written in the layout of a DAVIS 2017 release: a stand-in to try the
DAVIS command of ``compare`` on (its run time, its memory, the policies' figures on object video
of that size) before the real release is at hand.

The folder holds, per sequence ``seqNN``, its frames as ``JPEGImages/480p/seqNN/00000.jpg``, ...
(RGB, JPEG as DAVIS ships them) and its object masks as palette PNGs
``Annotations/480p/seqNN/00000.png``, ... (palette index = object id, 0 the background; the
colours are the usual VOC/DAVIS palette, which ``compare`` ignores), and the sequence names in
``ImageSets/2017/val.txt``. The frames are :class:`adaptive_dff.data.SyntheticVideo` clips of its
default motion (camera and objects moving about 2 pixels a frame, a slow brightness cycle; no scene
cuts, as a DAVIS sequence is one shot), sequence ``i`` of seed ``seed + i``; the folder name
``480p`` is DAVIS's whatever ``height`` is.

From the command line::

    python -m adaptive_dff.data.davis_layout OUT [--sequences 30] [--frames 67]

(30 sequences of 67 frames at 480x854, 2010 frames: about the size of DAVIS 2017's validation set,
30 sequences of about 2000 frames; written in under a minute.)
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Union

import cv2

from adaptive_dff.data.synthetic import SyntheticVideo
from schedulers.base import check_int

FRAMES_DIR = os.path.join("JPEGImages", "480p")
ANNOTATIONS_DIR = os.path.join("Annotations", "480p")
SEQUENCE_LIST = os.path.join("ImageSets", "2017", "val.txt")
MAX_OBJECTS = 254  # object ids 1..254: 255 is void to compare


def voc_palette(size: int = 256) -> list:
    """The VOC (and DAVIS) palette, ``[r0, g0, b0, r1, ...]`` for ``size`` indices: the bits of the
    index spread over the channels' high bits (index 1 dark red, 2 dark green, 3 olive, ...)."""
    palette = []
    for index in range(size):
        rgb = [0, 0, 0]
        value = index
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << (7 - bit)
            value >>= 3
        palette.extend(rgb)
    return palette


def write_davis_layout(root: Union[str, os.PathLike], sequences: int = 30, frames: int = 67, height: int = 480,
                       width: int = 854, objects: int = 2, seed: int = 100) -> list[str]:
    """Write ``sequences`` generated clips of ``frames`` frames each (``height`` x ``width``, ``objects``
    moving objects) into the folder ``root`` in a DAVIS 2017 release's layout (see the module notes);
    returns the sequence names. ``root`` must not exist yet or be empty (``FileExistsError``
    otherwise: nothing of another folder is overwritten); a failure part way leaves what was written."""
    from PIL import Image

    sequences, frames = check_int(sequences, "sequences", 1), check_int(frames, "frames", 1)
    if check_int(objects, "objects", 1) > MAX_OBJECTS:
        raise ValueError(f"objects must be an integer of 1 to {MAX_OBJECTS} (palette indices below 255, void), "
                         f"got {objects!r}")
    root = os.fspath(root)
    if os.path.exists(root) and (not os.path.isdir(root) or os.listdir(root)):
        raise FileExistsError(f"{root!r} exists and is not an empty folder; give a new one")
    palette = voc_palette()
    names = [f"seq{i:02d}" for i in range(sequences)]
    for i, name in enumerate(names):
        video = SyntheticVideo(height=height, width=width, num_frames=frames, seed=seed + i, num_objects=objects)
        frame_dir, label_dir = os.path.join(root, FRAMES_DIR, name), os.path.join(root, ANNOTATIONS_DIR, name)
        os.makedirs(frame_dir)
        os.makedirs(label_dir)
        for t in range(frames):
            bgr = cv2.cvtColor(video.frame(t), cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(os.path.join(frame_dir, f"{t:05d}.jpg"), bgr):
                raise OSError(f"could not write frame {t} of {name} into {frame_dir!r}")
            mask = Image.fromarray(video.objects(t), mode="P")  # uint8 ids 0..objects (no cuts: one scene)
            mask.putpalette(palette)
            mask.save(os.path.join(label_dir, f"{t:05d}.png"))
    os.makedirs(os.path.dirname(os.path.join(root, SEQUENCE_LIST)), exist_ok=True)
    with open(os.path.join(root, SEQUENCE_LIST), "w") as f:
        f.write("\n".join(names) + "\n")
    return names


def main(argv: Optional[list] = None) -> int:
    """The command line (see the module notes): write the folder, or exit with status 2 naming the
    problem."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="a new (or empty) folder to write")
    parser.add_argument("--sequences", type=int, default=30, help="sequences (default 30)")
    parser.add_argument("--frames", type=int, default=67, help="frames per sequence (default 67)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--objects", type=int, default=2, help="moving objects per sequence (default 2)")
    parser.add_argument("--seed", type=int, default=100, help="the first sequence's seed (default 100)")
    args = parser.parse_args(argv)
    try:
        names = write_davis_layout(args.out, args.sequences, args.frames, args.height, args.width, args.objects,
                                   args.seed)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    print(f"wrote {len(names)} sequence{'s' if len(names) != 1 else ''} of {args.frames} frames "
          f"({args.height}x{args.width}) into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
