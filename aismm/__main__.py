from aismm.cli import main

main()
