3
eu-west/room-1eu-west/room-1c