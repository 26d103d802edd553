"""The DynamoDB table of the product, split by what is stored in it: one repository each."""
