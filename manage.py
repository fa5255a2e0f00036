#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowplatform.settings")
    from django.core.management import execute_from_command_line

    from flowplatform.env import refuse_to_start_on_settings_error

    with refuse_to_start_on_settings_error():
        from flowplatform import telemetry

        telemetry.setup("web" if "runserver" in sys.argv[1:2] else "cli")
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
