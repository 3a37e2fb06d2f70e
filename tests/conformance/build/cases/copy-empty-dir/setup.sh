# git keeps no empty directory
mkdir -p empty tree/nested/empty-leaf tree/empty-sibling
