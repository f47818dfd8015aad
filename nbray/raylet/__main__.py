from nbray.raylet.raylet import main

main()
