from sam_detect.cli.main import main

main()
