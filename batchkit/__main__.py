from batchkit.cli import main

main()
