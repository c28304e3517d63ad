from upscaler.cli import main

main()
