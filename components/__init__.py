"""workhub's Pulumi components: typed config, pure script builders, and thin resources."""
