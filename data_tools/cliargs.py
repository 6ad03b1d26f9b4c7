"""argparse for the data tools and the ATC wrapper: a usage error is one line
``error: ...`` (a UserError, exit 2), like every other user error, not argparse's
usage block."""

import argparse

from common.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"{message} (see --help)")
