"""The Feast feature store of l2lab: repository definitions from the catalog, training sets, online serving."""
