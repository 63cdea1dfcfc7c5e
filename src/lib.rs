//! bulwark: the application wiring (`App`) over the runtime. It grows with the shop.
