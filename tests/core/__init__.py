"""Pure protocol-core tests: routes, ARP, IPv4, reassembly, ICMP, UDP on explicit time."""
