"""Lesson 6: the zoo table: every model's parameters and multiply-accumulates beside the published figures.

    python examples/lessons/06_zoo_table.py [--quick] [--out DIR]

A lesson-style entry to ``examples/zoo_table.py`` (the script itself stays there): ``--quick`` counts a few
classic models only; the table is printed and written to ``DIR/zoo_table.txt``.
"""
# %%
import contextlib
import io
import os
import sys

from _common import parse_args, write_text

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import zoo_table  # noqa: E402

args = parse_args(__doc__)
models = ["lenet5", "alexnet", "vgg16", "resnet18", "resnet50"] if args.quick else []
buffer = io.StringIO()
with contextlib.redirect_stdout(buffer):
    status = zoo_table.main((["--models", *models] if models else []))
print(buffer.getvalue())
write_text(f"{args.out}/zoo_table.txt", buffer.getvalue())
sys.exit(status)
