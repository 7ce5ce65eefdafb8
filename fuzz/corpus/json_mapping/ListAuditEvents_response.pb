-
™
eu-west/room-1eu-west/room-1eu-west/room-1"eu-west/room-1*eu-west/room-12eu-west/room-1:eu-west/room-1@Ë‰ì÷#H*Reu-west/room-1Zeu-west/room-1eu-west/room-1