"""`python -m policytag …` runs the command line (the service's retrain uses it)."""
from policytag.cli import main

main()
