from vezamig.cli import main

main()
