"""The nbray command line and its subcommands."""
