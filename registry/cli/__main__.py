"""`python -m compressgate.registry.cli ARGS`: the console script, for `-X importtime` and the
like."""

from compressgate.registry.cli.app import main

main()
