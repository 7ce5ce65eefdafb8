
 

eu-west/room-1eu-west/room-1.
eu-west/room-1*vp8vp8"eu-west/room-1( *(Ë‰ì÷#22
eu-west/room-1eu-west/room-1eu-west/room-1 eu-west/room-10
eu-west/room-1eu-west/room-1eu-west/room-1