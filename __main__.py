"""Entry point for `pulumi up`: the program itself lives in components/program.py."""

from components.program import program

program()
