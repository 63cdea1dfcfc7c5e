//! bulwark-http: the axum edge. It arrives with the shop.
