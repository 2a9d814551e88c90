"""Step kinds: one module per kind (generate, train, evaluate), each a plain function over a work
directory, so any executor (local, concurrent, Ray) runs them the same way."""
