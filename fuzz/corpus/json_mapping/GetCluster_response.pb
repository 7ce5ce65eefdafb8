
eu-west/room-1=
eu-west/room-1ceu-west/room-1"eu-west/room-1(0Ë‰ì÷#8* *(*