//! bulwark-actors: the shop's services (users, products, orders, payments,
//! notifications) built on `bulwark-runtime`. They arrive with the shop.
