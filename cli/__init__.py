"""The `mftlab` command line. Commands are thin: parse, build config, call the library, print."""
