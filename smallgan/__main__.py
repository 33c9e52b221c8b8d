from smallgan.cli import main

main()
