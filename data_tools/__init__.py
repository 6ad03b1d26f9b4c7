"""Data in and out of the road: dataset loaders, dataset fetching, img2bin and the
input .bin format (this stage owns it: writer, reader and manifest)."""
