"""One use case per Lambda handler, named like its folder in functions/, written against the ports."""
