"""cocotb glue of smtni: drivers and monitors, testbenches, the simulator runner and the CLI."""
