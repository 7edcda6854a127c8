from lakeproxy.cli import main

main()
