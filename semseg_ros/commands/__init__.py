"""The ``semseg`` subcommands: each module parses its arguments, calls the library, prints.

:mod:`semseg_ros.cli` dispatches to them; nothing in the library imports from here.
"""
