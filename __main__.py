"""Entry point for `pulumi up`: the program itself lives in components/program.py."""

from pathlib import Path

from components.program import program

program(Path(__file__).resolve().parent)
