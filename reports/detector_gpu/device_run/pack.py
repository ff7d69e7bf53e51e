"""Pack the detector training photos (resized) + labels into .gpu/data for the device."""

import shutil
import sys
from pathlib import Path

from PIL import Image, ImageOps

LONG = int(sys.argv[1]) if len(sys.argv) > 1 else 384
Q = int(sys.argv[2]) if len(sys.argv) > 2 else 90
src = Path("runs/datasets")  # run from the repository root
dst = Path(".gpu/data")
shutil.rmtree(dst, ignore_errors=True)
sets = {
    "hands_v1": ["train", "val"],
    "hagrid_teacher": ["train", "val"],
    "sld_teacher": ["train"],
}
n = 0
for name, splits in sets.items():
    for split in splits:
        (dst / name / "images" / split).mkdir(parents=True)
        (dst / name / "labels" / split).mkdir(parents=True)
        for img in sorted((src / name / "images" / split).iterdir()):
            lab = src / name / "labels" / split / (img.stem + ".txt")
            im = Image.open(img)
            im = ImageOps.exif_transpose(im).convert("RGB")
            s = LONG / max(im.size)
            if s < 1:
                size = (max(1, round(im.width * s)), max(1, round(im.height * s)))
                im = im.resize(size, Image.BICUBIC)
            im.save(dst / name / "images" / split / (img.stem + ".jpg"), "JPEG", quality=Q)
            if lab.is_file():
                shutil.copyfile(lab, dst / name / "labels" / split / lab.name)
            n += 1
listed = (src / "sld_teacher_quarter.txt").read_text().split()
quarter = [Path(line).stem for line in listed]
(dst / "sld_quarter_names.txt").write_text("\n".join(quarter) + "\n")
print(n, "images")
