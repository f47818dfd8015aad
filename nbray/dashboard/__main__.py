from nbray.dashboard.server import main

main()
