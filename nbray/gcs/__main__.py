from nbray.gcs.server import main

main()
